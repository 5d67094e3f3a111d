"""Cleaning, titles and extraction in extract.content."""

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from extract.charsets import decode_html
from extract.content import (
    article_from_html,
    article_from_text,
    detect_language,
    fallback_title,
    guess_title,
    normalize_text,
    remove_boilerplate,
    text_hash,
)

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
SEED_DATE = datetime(2023, 11, 29, tzinfo=UTC)


def read_seed(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


# --- seeds ---------------------------------------------------------------------------------------


def test_seed_000_loses_loading_fragment_and_photo_caption():
    article = article_from_text(read_seed("000"), "file:///seed/000.txt")

    assert article.published_at == SEED_DATE
    assert "loading" not in article.text.lower()
    assert "Photo/REUTERS" not in article.text
    assert "Hamas invites Elon Musk to Gaza" not in article.text
    assert article.text.startswith("BEIRUT – Hamas has invited Elon Musk")
    assert article.text.endswith("evacuate thousands of bodies from under the rubble.")
    assert "The invitation from senior Hamas official Osama Hamdan came on Tuesday." in article.text
    assert article.title.startswith("BEIRUT – Hamas has invited Elon Musk")
    assert article.url == "file:///seed/000.txt"


def test_seed_001_body_starts_on_the_date_line():
    article = article_from_text(read_seed("001"), "file:///seed/001.txt")

    assert article.published_at == SEED_DATE
    assert article.text.startswith("In the aftermath of the recent conflict between Israel and Palestine")
    assert "date 2023" not in article.text
    assert article.title.startswith("In the aftermath of the recent conflict")
    assert len(article.title) <= 120


def test_seed_002_loses_read_teaser():
    article = article_from_text(read_seed("002"), "file:///seed/002.txt")

    assert article.published_at == SEED_DATE
    assert "READ:" not in article.text
    assert "premature Palestinian babies" not in article.text
    assert article.text.endswith("destroyed by Israeli bombs.")
    assert "Musk responded to a post by businessman Walter Bloomberg" in article.text


@pytest.mark.parametrize("prefix", ["000", "001", "002"])
def test_seed_text_is_normalised(prefix):
    article = article_from_text(read_seed(prefix), "file:///seed")

    assert article.title and article.title.strip() == article.title
    assert "\n\n\n" not in article.text
    assert article.text == normalize_text(article.text)
    assert len(article.text.split("\n\n")) >= 5


# --- boilerplate rules on made-up lines ----------------------------------------------------------

KEEP = [
    "He read the statement aloud.",
    "The photo was taken in Gaza last week, officials said.",
    "She said she would read more about the case before deciding.",
    "Readers sent us their photos of the storm.",
    "He showed reporters a photo: it was blurred.",
    "The bakery handed out free cookies to the children.",
    "Loading bays at the port were closed, the company said.",
]
DROP = [
    "Loading...",
    "loading…",
    "Please wait",
    "Advertisement",
    "Skip to content",
    "Sign up for our newsletter",
    "Subscribe",
    "Photo: AP",
    "Protesters gather outside parliament on Monday. Photo/REUTERS",
    "Firefighters at the scene (Getty Images)",
    "Image credit: NASA/JPL",
    "Photograph: Mohammed Abed/AFP via Getty Images",
    "(AP Photo/Evan Vucci)",
    "READ: Israel left babies to die alone",
    "Read more: Rivers rise across the region",
    "Read more",
    "Also read: Markets fall again",
    "Related: How the vote was counted",
    "See also: Timeline of the war",
    "Click here to get the latest updates",
    "Share this article",
    "Share on Facebook",
    "Follow us on Twitter",
    "Tweet",
    "Email",
    "Facebook Twitter Email",
    "We use cookies to improve your experience. By continuing to browse you accept our cookie policy.",
    "© 2023 Example Media Ltd",
    "Copyright 2023 Reuters. All rights reserved.",
]


@pytest.mark.parametrize("line", KEEP)
def test_real_sentences_survive(line):
    assert remove_boilerplate(line) == line


@pytest.mark.parametrize("line", DROP)
def test_boilerplate_lines_are_removed(line):
    text = f"The council met on Monday.\n\n{line}\n\nThe vote passed."

    assert normalize_text(remove_boilerplate(text)) == "The council met on Monday.\n\nThe vote passed."


def test_ui_fragments_are_cut_from_line_ends():
    text = "Loading... The council met on Monday.\nThe vote passed. Advertisement"

    assert remove_boilerplate(text) == "The council met on Monday.\nThe vote passed."


def test_ui_fragment_glued_after_date_header_is_removed():
    article = article_from_text(" date 2024-01-02 Loading... The council met on Monday.", "u")

    assert article.text == "The council met on Monday."
    assert article.published_at == datetime(2024, 1, 2, tzinfo=UTC)


# --- normalisation and hashing -------------------------------------------------------------------


def test_normalize_text_cleans_whitespace_and_invisible_characters():
    raw = "  First\u200b  line\twith\u00a0spaces \r\nsecond line\x07\n\n\n\n\nNext   paragraph  \n"

    assert normalize_text(raw) == "First line with spaces\nsecond line\n\nNext paragraph"


def test_normalize_text_applies_nfkc():
    assert normalize_text("ﬁnal ｆｕｌｌｗｉｄｔｈ") == "final fullwidth"


def test_text_hash_ignores_spacing_quotes_and_case():
    original = "“No choice,” he said.\n\nIt’s over."
    variant = '  "No   choice," HE said.\nIt\'s over. '

    assert text_hash(original) == text_hash(variant)
    assert len(text_hash(original)) == 64


def test_text_hash_differs_for_different_words():
    assert text_hash("Israel had no choice.") != text_hash("Israel had a choice.")


# --- titles --------------------------------------------------------------------------------------


def test_guess_title_finds_headline_after_byline_and_date():
    text = "By Jane Doe\n29 November 2023\nMusk Declines Invitation To Visit Gaza\n\nElon Musk said no."

    assert guess_title(text) == "Musk Declines Invitation To Visit Gaza"


@pytest.mark.parametrize(
    "text",
    [
        "Elon Musk has refused to visit the Gaza Strip.",
        "Published 29 November 2023",
        "2023-11-29",
        "",
        "a lowercase fragment without an ending",
        "Musk declined the invitation. He stayed in Israel",
    ],
)
def test_guess_title_rejects_non_headlines(text):
    assert guess_title(text) is None


def test_guess_title_accepts_question_headline():
    assert guess_title("Will Musk Visit Gaza?\n\nBody.") == "Will Musk Visit Gaza?"


def test_fallback_title_truncates_at_word_boundary():
    sentence = "The " + "very " * 40 + "long sentence ends here. Second sentence."
    title = fallback_title(sentence)

    assert title.endswith("…")
    assert len(title) <= 120
    assert sentence.startswith(title[:-1])
    assert not title[:-1].endswith(" ")


def test_fallback_title_uses_first_sentence_and_skips_abbreviations():
    assert fallback_title("Mr. Smith met U.S. officials. They talked.") == "Mr. Smith met U.S. officials."
    assert fallback_title("") == ""


def test_headline_line_becomes_title_and_leaves_body():
    raw = "date 2023-11-29\nMusk Declines Gaza Invitation\n\nElon Musk said no on Wednesday."
    article = article_from_text(raw, "u")

    assert article.title == "Musk Declines Gaza Invitation"
    assert article.text == "Elon Musk said no on Wednesday."


def test_explicit_published_at_wins_and_is_utc():
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    article = article_from_text("date 2023-11-29 Body text here.", "u", published_at=moment)

    assert article.published_at == moment
    assert article.published_at.tzinfo == UTC


def test_text_without_date_header_has_no_date():
    article = article_from_text("Just a body sentence.", "u")

    assert article.published_at is None
    assert article.text == "Just a body sentence."


# --- HTML ----------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en-GB">
<head>
  <title>Storm Floods Coastal Town | Example News</title>
  <meta property="og:title" content="Storm floods coastal town">
  <meta property="og:site_name" content="Example News">
  <meta property="article:published_time" content="2024-03-05T08:30:00Z">
  <meta name="author" content="Jane Doe">
</head>
<body>
  <nav><a href="/">Home</a> <a href="/world">World</a> <a href="/sport">Sport section navigation</a></nav>
  <article>
    <h1>Storm floods coastal town</h1>
    <p>Heavy rain flooded the coastal town of Millport overnight, forcing hundreds of residents
       to leave their homes before dawn.</p>
    <p>Residents wade through water in Millport on Tuesday. Photo/REUTERS</p>
    <p>Emergency crews worked through the night to pump water from the main street, the council
       said in a statement on Tuesday morning.</p>
    <p>Forecasters expect more rain later this week and have warned that rivers across the region
       could burst their banks again.</p>
    <p>Read more: Rivers rise across the region</p>
    <p>Share this article</p>
  </article>
  <footer>
    <p>Copyright 2024 Example News. All rights reserved.</p>
    <p>Privacy policy | Terms of use | Contact the newsroom team</p>
  </footer>
</body>
</html>"""


@pytest.mark.parametrize("page", [PAGE, PAGE.encode("utf-8")])
def test_article_from_html_extracts_text_and_metadata(page):
    article = article_from_html(page, "https://example.com/storm")

    assert article is not None
    assert article.url == "https://example.com/storm"
    assert article.title == "Storm floods coastal town"
    assert article.published_at == datetime(2024, 3, 5, tzinfo=UTC)
    assert article.author == "Jane Doe"
    assert article.site_name == "Example News"
    assert article.language == "en"
    assert article.text.startswith("Heavy rain flooded the coastal town of Millport overnight")
    assert len(article.text.split("\n\n")) == 3
    for noise in ("Home", "navigation", "Photo/REUTERS", "Read more", "Share this", "Copyright", "Privacy"):
        assert noise not in article.text


def test_article_from_html_returns_none_without_text():
    assert article_from_html("<html><head><title>Empty</title></head><body></body></html>", "u") is None


def _page(head: str, body: str, lang: str = "") -> str:
    return f"<html{lang}><head>{head}</head><body><article><p>{body}</p></article></body></html>"


GERMAN = "Die Bundesregierung hat am Mittwoch beschlossen, die Hilfen für die Landwirte deutlich zu erhöhen. " * 3
ENGLISH = "The city council voted on Tuesday to expand the night bus network across the northern districts. " * 3


def test_language_from_html_lang_else_detected_from_the_text():
    assert article_from_html(_page("", ENGLISH, " lang='en-GB'"), "https://example.com/a").language == "en"
    assert article_from_html(_page("", GERMAN), "https://example.com/b").language == "de"
    assert article_from_html(_page("", ENGLISH), "https://example.com/c").language == "en"
    assert detect_language("Too short.") is None


def test_canonical_link_and_image_are_kept_but_a_home_page_canonical_is_not():
    head = "<link rel='canonical' href='https://example.com/news/2023/story'><meta property='og:image' content='https://example.com/i.jpg'>"
    article = article_from_html(_page(head, ENGLISH), "https://example.com/amp/story?x=1")
    assert article.canonical_url == "https://example.com/news/2023/story"
    assert article.image_url == "https://example.com/i.jpg"
    home = article_from_html(_page("<link rel='canonical' href='https://example.com/'>", ENGLISH), "https://example.com/s")
    assert home.canonical_url is None
    assert article_from_html(_page("", ENGLISH), "https://example.com/s").canonical_url is None



def _fields(article):
    return (article.text, article.title, article.author, article.site_name, article.language,
            article.canonical_url, article.image_url)


@pytest.mark.parametrize("page", [
    PAGE,
    _page("<title>Night buses for the north | Example</title>", ENGLISH, " lang='en'"),
    _page("<title>Buses at night</title><link rel='canonical' href='https://example.com/news/2023/story'>"
          "<meta property='og:image' content='https://example.com/i.jpg'>"
          '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Buses at night",'
          ' "author": {"@type": "Person", "name": "Ann Other"}, "publisher": {"name": "Example Daily"}}</script>', ENGLISH),
])
def test_a_page_whose_feed_entry_gives_date_and_title_gets_the_same_text_and_metadata(page):
    # Only the date search and the author heuristics are skipped: the feed's date wins anyway.
    full = article_from_html(page, "https://example.com/amp/story")
    lean = article_from_html(page, "https://example.com/amp/story", entry_title="Entry title")
    assert _fields(lean) == _fields(full)
    assert lean.published_at is None


BYLINE = _page("<title>Buses at night</title>", "<span class='author'>Mary Jane Watson</span></p><p>" + ENGLISH)


def test_the_page_is_searched_for_a_byline_unless_the_entry_names_the_author():
    assert article_from_html(BYLINE, "https://example.com/a").author == "Mary Jane Watson"
    assert article_from_html(BYLINE, "https://example.com/a", entry_title="Buses").author == "Mary Jane Watson"
    # The feed flow gives the page the entry's author (`flows.polling`): the page's is not looked for.
    assert article_from_html(BYLINE, "https://example.com/a", entry_title="Buses", entry_author="M. Watson").author is None


def test_the_entry_title_is_the_title_of_a_page_that_names_none():
    article = article_from_html(_page("", ENGLISH), "https://example.com/a", entry_title="Night buses for the north")
    assert article.title == "Night buses for the north"
    assert article_from_html("<html><body></body></html>", "u", entry_title="Empty") is None

# --- charsets ------------------------------------------------------------------------------------

# Short and French enough that a charset detector alone reads it as windows-1250 or -1257 ("naďve").
FRENCH = "Café, naïve, € — l’été à Paris : très chaud, déjà 35 °C à midi, disent les météorologues français. "
CYRILLIC = "Городской совет во вторник проголосовал за расширение ночной автобусной сети в северных районах. "


def _declared_page(body: str, meta_charset: str | None = None) -> str:
    meta = f"<meta charset='{meta_charset}'>" if meta_charset else ""
    return (f"<html><head>{meta}<title>Un café naïf</title></head>"
            f"<body><article><h1>Un café naïf</h1><p>{body}</p><p>{body}</p></article></body></html>")


@pytest.mark.parametrize(
    ("page", "charset"),
    [
        (_declared_page(FRENCH).encode("windows-1252"), "utf-8"),  # the header lies
        (_declared_page(FRENCH, "utf-8").encode("windows-1252"), None),  # the <meta> lies
        (_declared_page(FRENCH, "utf-8").encode("windows-1252"), "utf-8"),  # both lie
        (_declared_page(FRENCH).encode("utf-8"), "iso-8859-1"),  # would read "cafÃ©"
        (_declared_page(FRENCH, "iso-8859-1").encode("utf-8"), None),
        (_declared_page(FRENCH, "utf-8").encode("utf-8"), "utf-8"),  # honest pages stay as they were
        (_declared_page(FRENCH, "windows-1252").encode("windows-1252"), "windows-1252"),
        (_declared_page(FRENCH, "iso-8859-1").encode("windows-1252"), "iso-8859-1"),  # as browsers read it
    ],
    ids=["utf8-header-cp1252-bytes", "utf8-meta-cp1252-bytes", "utf8-both-cp1252-bytes", "latin1-header-utf8-bytes",
         "latin1-meta-utf8-bytes", "utf8-honest", "cp1252-honest", "latin1-honest"],
)
def test_page_in_a_wrong_declared_charset_is_read_in_the_right_one(page, charset):
    article = article_from_html(page, "https://example.com/cafe", charset=charset)

    assert article.title == "Un café naïf"
    assert "Café, naïve, € — l’été à Paris" in article.text and "très chaud, déjà 35 °C à midi" in article.text
    for garbled in ("Ã", "Â", "\ufffd", "ï¿½"):
        assert garbled not in article.text + article.title


def test_short_text_in_a_wrong_declared_charset():
    page = b"<html><head><meta charset='utf-8'></head><body><p>caf\xe9, na\xefve, \x80</p></body></html>"

    assert "café, naïve, €" in decode_html(page)
    assert "café, naïve, €" in decode_html("<p>café, naïve, €</p>".encode(), "iso-8859-1")


def test_page_mixing_utf8_with_stray_windows_1252_bytes():
    page = _declared_page(FRENCH, "utf-8").encode("utf-8").replace("naïf</h1>".encode(), b"na\xeff \x96 M\xe4rz</h1>")

    assert "Un café naïf – März</h1>" in decode_html(page, "utf-8") and "Ã" not in decode_html(page, "utf-8")


def test_cyrillic_page_without_or_with_a_wrong_declaration():
    page = _page("", CYRILLIC * 2).encode("windows-1251")

    for charset in (None, "utf-8", "iso-8859-1"):
        assert CYRILLIC in decode_html(page, charset)
    assert CYRILLIC.strip() in article_from_html(page, "https://example.com/ru", charset="utf-8").text


def test_bytes_that_are_no_text_in_any_charset_give_no_article():
    noise = random.Random(7).randbytes(4000)
    page = (b"<html><head><meta charset='utf-8'><title>x</title></head><body><article><p>" + noise
            + b"</p></article></body></html>")

    assert decode_html(page, "utf-8") is None
    assert article_from_html(page, "https://example.com/noise", charset="utf-8") is None


def test_declared_charset_that_is_unknown_or_not_a_text_encoding_is_ignored():
    page = _declared_page(FRENCH).encode("windows-1252")

    for charset in ("utf-7", "base64", "rot13", "x-nonsense", "unicode-escape"):
        assert "Café, naïve, €" in decode_html(page, charset)


def test_byte_order_mark_wins_over_the_declaration():
    page = _declared_page(FRENCH, "iso-8859-1")

    assert FRENCH in decode_html(page.encode("utf-16"), "iso-8859-1")
    assert FRENCH in decode_html(page.encode("utf-16-le"), "utf-16le")


def test_utf8_bytes_reach_trafilatura_as_before():
    page = _declared_page(FRENCH, "iso-8859-1").encode("utf-8")

    assert decode_html(b"\xef\xbb\xbf" + page) == "\ufeff" + page.decode()  # what trafilatura itself would do
    assert article_from_html(page, "https://example.com/a") == article_from_html(page.decode(), "https://example.com/a")
