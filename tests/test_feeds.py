"""Feed parsing in extract.feeds: formats, hostile XML, links, dates, and real corpora."""

import random
import socket
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from extract.feeds import FeedError, ParsedFeed, canonicalize_url, declares_xml_entities, parse_feed

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
EVAL = Path(__file__).parents[2] / "shared" / "eval"
FEED_URL = "https://feeds.example.org/path/feed.xml"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test in which parsing tries to reach the network (a DTD, an entity, a URL body)."""

    def refuse(*args, **kwargs):
        raise AssertionError("feed parsing tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(feedparser.http, "get", refuse)


def parse(name: str, **kwargs) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), url=FEED_URL, **kwargs)


def rss(items: str, prolog: str = '<?xml version="1.0" encoding="utf-8"?>') -> bytes:
    return f'{prolog}<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


def item(link: str, **fields: str) -> str:
    return "<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in {"link": link, **fields}.items()) + "</item>"


# --- formats -------------------------------------------------------------------------------------


def test_rss2_entries_fields_links_and_duplicates():
    feed = parse("rss2.xml")

    assert (feed.title, feed.link, feed.warning) == ("Newswatch Test Wire", "https://wire.example.org/", None)
    # Five items: a javascript: link is skipped and the last repeats the first after canonicalisation.
    assert [entry.url for entry in feed.entries] == [
        "https://wire.example.org/news/bridge-reopens",
        "https://feeds.example.org/news/budget",  # a relative link, resolved against the feed URL
        "https://wire.example.org/news/guid-only",  # no link, but the guid is a URL
    ]
    first = feed.entries[0]
    assert first.title == "Harbour bridge reopens after repairs"
    assert first.published_at == datetime(2024, 6, 4, 7, 30, tzinfo=UTC)
    assert first.author == "Ada Example"
    assert first.guid == "wire-0001"
    assert first.summary == "The bridge reopened on Tuesday. Traffic & trams resume."
    assert feed.entries[1].summary == "Line one line two"
    assert feed.entries[2].summary is None and feed.entries[2].published_at is None


def test_rss1_rdf():
    feed = parse("rss1.rdf")

    assert feed.title == "RDF Site Summary"
    (entry,) = feed.entries
    assert entry.url == "https://rdf.example.org/a"
    assert entry.published_at == datetime(2023, 11, 5, 13, 15, tzinfo=UTC)
    assert (entry.author, entry.summary) == ("Grace Example", "Plain description.")


def test_rss091_with_netscape_doctype_parses_without_fetching_the_dtd():
    feed = parse("rss091.xml")  # the autouse fixture fails the test on any connection

    assert feed.title == "Old School Headlines"
    assert [(entry.url, entry.title, entry.summary) for entry in feed.entries] == [
        ("http://old.example.org/cafe.html", "Café opens", "A café opened downtown.")
    ]


def test_atom_uses_xml_base_html_titles_and_updated_as_fallback_date():
    feed = parse("atom.xml")

    assert (feed.title, feed.link) == ("Atom <Test> Blog", "https://atom.example.org/")
    one, two = feed.entries
    assert one.url == "https://atom.example.org/blog/posts/one"
    assert one.published_at == datetime(2024, 1, 2, 1, 30, tzinfo=UTC)  # published wins over updated
    assert (one.author, one.summary) == ("Lin Example", "Hello world")
    assert one.guid == "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert two.published_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    assert two.summary == "Content only."  # no summary, so the content


def test_json_feed():
    feed = parse("feed.json")

    assert (feed.title, feed.link, feed.warning) == ("JSON Example", "https://json.example.org/", None)
    one, two = feed.entries  # the item without a URL and the non-object item are skipped
    assert one.url == "https://json.example.org/posts/1"
    assert (one.title, one.author, one.summary, one.guid) == ("First JSON post", "Sam Example", "Hello there", "1")
    assert one.published_at == datetime(2024, 2, 1, 11, 0, tzinfo=UTC)
    assert two.url == "https://elsewhere.example.com/story"
    assert (two.author, two.summary) == ("Old Style Author", "A short summary.")
    assert two.published_at == datetime(2024, 2, 2, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "invalid JSON"),
        (b'{"title": "no items"}', "JSON without a JSON Feed structure"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "invalid JSON"),  # too deep to parse
    ],
)
def test_json_that_is_not_a_feed(body, message):
    with pytest.raises(FeedError, match=message):
        parse_feed(body, url=FEED_URL)


def test_bozo_feed_keeps_its_entries_and_reports_one_line():
    feed = parse("bozo.xml")

    assert [entry.url for entry in feed.entries] == ["https://bozo.example.org/one", "https://bozo.example.org/two"]
    assert feed.entries[0].title == "Uses an undefined entity here"
    assert "undefined entity" in feed.warning and "\n" not in feed.warning


def test_wrong_content_type_is_a_warning_not_an_error():
    feed = parse("rss2.xml", content_type="text/html; charset=utf-8")

    assert len(feed.entries) == 3
    assert "not an XML media type" in feed.warning


def test_empty_channel_is_a_feed_without_entries():
    feed = parse("empty_channel.xml")

    assert (feed.title, feed.entries, feed.warning) == ("Quiet feed", (), None)


TRUNCATED_RSS = (b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>\n'
                 b"<title>Cut short</title><link>https://cut.example.org/</link>\n<item><title>Half an it")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (TRUNCATED_RSS, r"^not a feed: XML syntax error at line 4: no element found$"),
        (rss("<item><title>No link</title></item"), r"^not a feed: XML syntax error at line 1: not well-formed"),
        (b'<rss version="2.0"><channel><title>T</title></chanel></rss>', "XML syntax error at line 1: mismatched tag"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'><title>T &hellip;</title></feed>", "undefined entity"),
    ],
    ids=["truncated", "unclosed-item", "mismatched-channel", "atom-undefined-entity"],
)
def test_ill_formed_feed_without_entries_is_a_feed_error(body, message):
    # feedparser sets bozo and returns no entries; a feed that yields nothing must not look healthy.
    with pytest.raises(FeedError, match=message) as raised:
        parse_feed(body, url=FEED_URL, content_type="application/rss+xml")

    assert "\n" not in str(raised.value)


def test_ill_formed_feed_with_recoverable_entries_keeps_them_with_a_warning():
    body = rss(item("https://ok.example.org/a", title="Caf&eacute; &amp; more")
               + item("https://ok.example.org/b", title="Second") + "<item><title>Cut")

    feed = parse_feed(body, url=FEED_URL, content_type="application/rss+xml")

    assert [entry.url for entry in feed.entries] == ["https://ok.example.org/a", "https://ok.example.org/b"]
    assert feed.warning.startswith("SAXParseException") and "\n" not in feed.warning


@pytest.mark.parametrize("content_type", [None, "application/rss+xml", "text/plain", "text/html"])
def test_well_formed_feed_without_items_is_healthy(content_type):
    # A wrong media type makes feedparser set bozo, but the document itself is fine and empty.
    feed = parse_feed(rss(""), url=FEED_URL, content_type=content_type)

    assert (feed.title, feed.entries) == ("T", ())
    assert feed.warning is None or "not an XML media type" in feed.warning


def test_well_formed_feed_with_a_wrong_declared_encoding_is_healthy():
    body = rss("", '<?xml version="1.0" encoding="utf-8"?>').replace(b"<title>T", "<title>Caf\xe9".encode("latin-1"))

    feed = parse_feed(body, url=FEED_URL)

    assert feed.entries == () and "CharacterEncodingOverride" in feed.warning


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ((FEEDS / "page.html").read_bytes(), "not a feed: looks like an HTML page"),
        (b"<html><body><p>hi</p></body></html>", "looks like an HTML page"),
        (b"", "the body is empty"),
        (b"  \n ", "the body is empty"),
        (b"just some text", "no RSS, Atom or JSON Feed structure"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "no RSS, Atom or JSON Feed structure"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "no RSS, Atom or JSON Feed structure"),
        (rss("", '<?xml version="1.0" encoding="punycode"?>'), "could not be parsed"),
    ],
)
def test_bodies_that_are_not_feeds(body, message):
    with pytest.raises(FeedError, match=message):
        parse_feed(body, url=FEED_URL)


# --- safety --------------------------------------------------------------------------------------


ONE_LINE_LAUGHS = rss("", "<!DOCTYPE rss [<!ENTITY l0 'lol'>" + "".join(
    f"<!ENTITY l{i} '{f'&l{i - 1};' * 10}'>" for i in range(1, 10)) + "]>").replace(b"<title>T", b"<title>&l9;")


# feedparser strips multi-line declarations itself but misses one-line ones, which expat then
# expands until its amplification limit stops it (about a second of CPU per feed).
@pytest.mark.parametrize(
    "body", [(FEEDS / "billion_laughs.xml").read_bytes(), ONE_LINE_LAUGHS], ids=["file", "one-line"]
)
def test_billion_laughs_is_refused_at_once(body):
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(FeedError, match=r"^feed declares XML entities; refused$"):
        parse_feed(body, url=FEED_URL)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert elapsed < 2  # refused before parsing: expanding the entities would take minutes
    assert peak < 2_000_000


def test_external_entity_is_refused_and_never_read(monkeypatch):
    body = (FEEDS / "xxe.xml").read_bytes()
    monkeypatch.setattr(feedparser, "parse", lambda *a, **k: pytest.fail("feedparser saw the bytes"))

    with pytest.raises(FeedError, match="declares XML entities") as error:
        parse_feed(body, url=FEED_URL)
    assert "root:" not in str(error.value)


@pytest.mark.parametrize(
    "body",
    [
        # The same declaration hidden from a naive byte scan in several ways.
        rss("", '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE rss [<!ENTITY a "b">]>').decode().encode("utf-16"),
        rss("", '<!DOCTYPE rss [<!ENTITY a "b">]>').decode().encode("utf-32-le"),
        rss("", '<?xml version="1.0" encoding="utf-7"?><!DOCTYPE rss [+ADwAIQ-ENTITY a "b">]>'),  # feedparser obeys
        rss("", '<!-- a comment with <b> in it --><!DOCTYPE rss [<!ENTITY a "b">]>'),
        rss("", '<!DOCTYPE rss SYSTEM "<looks-like-root>" [<!ENTITY a "b">]>'),
        rss("", '<!DOCTYPE rss [<!NOTATION n SYSTEM "<x>"><!ENTITY % p SYSTEM "http://127.0.0.1/x.dtd"> %p;]>'),
        rss("", "<!DOCTYPE rss [\n  <!entity a 'b'>\n]>"),
    ],
    ids=["utf-16", "utf-32-no-bom", "utf-7", "comment", "system-literal", "parameter", "case"],
)
def test_entity_declarations_are_found_however_they_are_written(body):
    assert declares_xml_entities(body)
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body, url=FEED_URL)


def test_charset_from_content_type_is_scanned_too():
    body = b'<!DOCTYPE rss [+ADwAIQ-ENTITY a "b">]><rss/>'  # "<!ENTITY" in UTF-7

    assert declares_xml_entities(body, "application/rss+xml; charset=utf-7")
    with pytest.raises(FeedError, match="declares XML entities"):
        parse_feed(body, url=FEED_URL, content_type="application/rss+xml; charset=utf-7")


def test_entity_after_the_root_element_is_not_looked_for():
    body = rss(item("https://a.example.org/", description="&lt;!ENTITY is just text here"))

    assert not declares_xml_entities(body)
    assert len(parse_feed(body, url=FEED_URL).entries) == 1


def test_size_and_prolog_limits():
    body = rss(item("https://a.example.org/"))
    with pytest.raises(FeedError, match="larger than 10 bytes"):
        parse_feed(body, url=FEED_URL, max_bytes=10)
    with pytest.raises(FeedError, match="no root element in the first 64 KiB"):
        parse_feed(b"<!--" + b"x" * 70_000 + b"-->" + body, url=FEED_URL)


def test_feedparser_itself_opens_bytes_that_name_a_file(tmp_path):
    # Why parse_feed hands feedparser a BytesIO: given bytes, feedparser tries them as a path.
    path = tmp_path / "feed.xml"
    path.write_bytes(rss(item("https://local.example.org/")))

    assert feedparser.parse(str(path).encode()).feed.get("title") == "T"
    with pytest.raises(FeedError):
        parse_feed(str(path).encode(), url=FEED_URL)


@pytest.mark.parametrize("body", [b"/etc/passwd", b"file:///etc/passwd", b"http://127.0.0.1:9/feed.xml"])
def test_bodies_that_look_like_paths_or_urls_are_never_opened(body):
    with pytest.raises(FeedError, match="not a feed") as error:
        parse_feed(body, url=FEED_URL)
    assert "root:" not in str(error.value)


# --- links, dates, summaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://News.Example.COM:443/a/b?utm_source=x&utm_medium=y&utm_campaign=z&utm_content=c&utm_term=t"
         "&fbclid=1&gclid=2&mc_cid=3&mc_eid=4&ref=5&cmpid=6&CMP=7&smid=8&_hsenc=9&id=42#section",
         "https://news.example.com/a/b?id=42"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/x/", "http://example.com:8080/x/"),
        ("https://example.com/story.php?story=2&b=1&a=2", "https://example.com/story.php?a=2&b=1&story=2"),
        ("https://example.com/watch?v=abc123&feature=share", "https://example.com/watch?feature=share&v=abc123"),
    ],
)
def test_canonicalize_url(url, expected):
    assert canonicalize_url(url) == expected


def test_entries_are_deduplicated_by_canonical_url_keeping_the_first():
    body = rss(
        item("https://a.example.org/x?utm_source=rss", title="first")
        + item("https://A.example.org/x#top", title="second")
        + item("/x", title="third, relative to the feed URL on another host")
        + item("https://a.example.org/x?story=2", title="a different story")
    )
    feed = parse_feed(body, url="https://a.example.org/feed")

    assert [(entry.url, entry.title) for entry in feed.entries] == [
        ("https://a.example.org/x", "first"),
        ("https://a.example.org/x?story=2", "a different story"),
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pubDate", "Mon, 06 Sep 2021 16:45:00 GMT", datetime(2021, 9, 6, 16, 45, tzinfo=UTC)),
        ("pubDate", "Mon, 06 Sep 2021 16:45:00 -0500", datetime(2021, 9, 6, 21, 45, tzinfo=UTC)),
        ("pubDate", "Mon, 6 Sep 21 16:45 EST", datetime(2021, 9, 6, 21, 45, tzinfo=UTC)),
        ("pubDate", "2021-09-06T16:45:00+02:00", datetime(2021, 9, 6, 14, 45, tzinfo=UTC)),
        ("pubDate", "2021-09-06", datetime(2021, 9, 6, tzinfo=UTC)),
        ("dc:date", "2021-09-06T16:45:00Z", datetime(2021, 9, 6, 16, 45, tzinfo=UTC)),
        ("pubDate", "yesterday-ish", None),
        ("pubDate", "", None),
        ("pubDate", "Thu, 01 Jan 1970 00:00:00 GMT", None),  # epoch zero: a missing date
        ("pubDate", "Fri, 01 Jan 2999 00:00:00 GMT", None),  # far future
    ],
)
def test_dates(field, value, expected):
    body = rss(item("https://d.example.org/", **{field: value})).replace(
        b"<rss ", b'<rss xmlns:dc="http://purl.org/dc/elements/1.1/" '
    )
    (entry,) = parse_feed(body, url=FEED_URL).entries

    assert entry.published_at == expected
    assert entry.published_at is None or entry.published_at.tzinfo is UTC


def test_missing_date_is_none():
    (entry,) = parse_feed(rss(item("https://d.example.org/")), url=FEED_URL).entries

    assert entry.published_at is None


def test_summary_is_plain_text():
    description = (
        "&lt;div&gt;&lt;p&gt;One&lt;/p&gt;&lt;ul&gt;&lt;li&gt;two&lt;/li&gt;&lt;/ul&gt;&amp;amp; &#160; three&lt;/div&gt;"
    )
    (entry,) = parse_feed(rss(item("https://s.example.org/", description=description)), url=FEED_URL).entries

    assert entry.summary == "One two & three"


def test_json_summary_drops_scripts_and_keeps_words_apart():
    body = (
        b'{"version": "https://jsonfeed.org/version/1", "items": [{"url": "https://j.example.org/1",'
        b' "content_html": "<p>Para one</p><p>Para two<script>alert(1)</script></p>",'
        b' "date_published": "1985-01-01T00:00:00Z"}]}'
    )
    (entry,) = parse_feed(body, url=FEED_URL).entries

    assert entry.summary == "Para one Para two"
    assert entry.published_at is None  # before 1990


# --- real corpora --------------------------------------------------------------------------------


def test_real_corpora_give_a_feed_or_a_feed_error():
    folders = [EVAL / name / "dev" for name in
               ("C1_feedparser_tests", "C2_feedjira_sample_feeds", "C3_node_feedparser_feeds")]
    folders = [folder for folder in folders if folder.is_dir()]
    if not folders:
        pytest.skip(f"evaluation corpora not found under {EVAL}")
    counts = {"with entries": 0, "without entries": 0, "FeedError": 0}
    failures = []
    started = time.perf_counter()
    for path in sorted(path for folder in folders for path in folder.rglob("*") if path.is_file()):
        if path.name == "index.jsonl":
            continue
        try:
            feed = parse_feed(path.read_bytes(), url="http://127.0.0.1/feed")
        except FeedError:
            counts["FeedError"] += 1
        except Exception as error:  # noqa: BLE001 - collect every failure, report them together
            failures.append(f"{path.relative_to(EVAL)}: {type(error).__name__}: {error}")
        else:
            counts["with entries" if feed.entries else "without entries"] += 1
    elapsed = time.perf_counter() - started
    print(f"\ncorpora {[f.parent.name for f in folders]}: {counts} in {elapsed:.1f}s")

    assert not failures, "\n".join(failures[:20])
    assert counts["with entries"] > 0


def test_mangled_fixtures_give_a_feed_or_a_feed_error():
    # A small seeded fuzz: corrupt, truncate and splice the fixtures; nothing but FeedError may escape.
    rng = random.Random(20240601)
    seeds = [path.read_bytes() for path in sorted(FEEDS.iterdir())]
    splices = [b"<", b"&", b"&#xD800;", b"]]>", b"\x00", b"\xff\xfe", b"http://[::1", b"<!--", b'"', b"{", b"\xe9"]
    for _ in range(400):
        body = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(body) + 1)
            body = body[:at] + rng.choice(splices) + body[at + rng.randint(0, 20):]
        try:
            parse_feed(bytes(body), url=FEED_URL)
        except FeedError:
            pass
