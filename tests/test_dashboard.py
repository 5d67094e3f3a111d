"""The Streamlit dashboard, driven headless with AppTest.

Most tests read one database built once for the module by the real ingest flow from the seed
articles (000 original, 001 its rewrite, 002 another report of the same event). Filters, feed
health and runs use small databases written through the warehouse's own functions; broken
states use broken files; the concurrency test reads in another process while the flow writes.
"""

import json
import re
import string
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import snapshot
from dashboards.difference import word_difference
from dashboards.plain_text import WORD_JOINER, http_link, plain
from flows.ingest import ingest_fixtures
from flows.embedding import embedding_model_key, get_embedder
from flows.settings import Settings
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, FetchFailure, add_feed, feed_id_for, record_fetch_failures, record_feed_outcomes
from warehouse.migrations import MIGRATIONS
from warehouse.queries import list_stories, story_articles
from warehouse.runs import RunRecord, record_run
from warehouse.sql import execute

ROOT = Path(__file__).parent.parent
APP = str(ROOT / "dashboards" / "app.py")
PAGES = {
    "stories": "stories_page.py",
    "story": "story_page.py",
    "feeds": "feeds_page.py",
    "search": "search_page.py",
    "runs": "runs_page.py",
}
START = datetime(2024, 2, 10, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model_loading():
    """The model loads while Prefect's temporary server starts: both take seconds."""
    threading.Thread(target=get_embedder(Settings()).load, daemon=True).start()


pytestmark = pytest.mark.usefixtures("model_loading", "prefect_server")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> dict:
    """The seeds ingested once by the real flow, and what the tests need to know about them."""
    db = tmp_path_factory.mktemp("seeded") / "newswatch.duckdb"
    summary = ingest_fixtures(SEEDS, db, Settings())
    assert (summary.new_articles, summary.duplicates, summary.new_stories) == (3, 1, 1)
    with open_warehouse(db, read_only=True) as connection:
        (story,) = list_stories(connection)
        articles = story_articles(connection, [story["story_id"]])
    by_file = {article["url"].rsplit("/", 1)[1]: article for article in articles}
    return {"db": db, "story": story, "original": by_file[ORIGINAL], "rewrite": by_file[REWRITE], "other": by_file[OTHER]}


@pytest.fixture(autouse=True)
def fresh_cache():
    """Every test reads the database itself, not what an earlier test cached."""
    snapshot.refresh()


def open_page(monkeypatch, database: Path, page: str = "stories", query: dict | None = None, *arguments: str) -> AppTest:
    """Run the app against this database and show one page (with these URL query parameters)."""
    monkeypatch.setattr(sys, "argv", ["dashboards/app.py", "--db", str(database), *arguments])
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params.update(query or {})
    app.run()
    if page != "stories":
        app.query_params.update(query or {})
        app.switch_page(PAGES[page]).run()
    return app


def texts(elements) -> list[str]:
    """The text of each element."""
    return [element.value for element in elements]


def data_as_of(app: AppTest) -> bool:
    """Whether the page says how old its data is."""
    return any(caption.startswith("data as of ") and caption.endswith(" UTC") for caption in texts(app.caption))


def quiet(app: AppTest) -> bool:
    """No exception, error or warning on the page."""
    return not app.exception and not app.error and not app.warning


# Stories


def test_stories_page_shows_the_story_of_three(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"])

    assert quiet(app) and not app.info
    assert texts(app.title) == ["Stories"]
    assert data_as_of(app)
    table = app.dataframe[0].value
    assert list(table.columns) == [
        "headline", "articles", "duplicates", "sources", "first seen (UTC)", "last seen (UTC)", "last 24 h", "timeline"
    ]
    (row,) = table.to_dict("records")
    assert row["headline"] == seeded["story"]["headline"] == seeded["original"]["title"]
    assert (row["articles"], row["duplicates"], row["sources"], row["last 24 h"]) == (3, 1, "fixtures", 3)
    assert row["first seen (UTC)"] == row["last seen (UTC)"] == "2023-11-29 00:00"
    # One day shown by the hour: all three seeds are dated 2023-11-29 (midnight).
    assert list(row["timeline"]) == [3] + [0] * 23


def filter_database(path: Path) -> Path:
    """Three stories on three days, in two languages, from two feeds and from files."""
    now = datetime.now(UTC)
    rows = [
        # article, story, title, minutes after START, duplicate of, language, feed
        ("a1", "s1", "Bridge reopens after repairs", 0, None, "en", "city"),
        ("a2", "s1", "Bridge reopens to traffic after repairs", 30, "a1", "en", "city"),
        ("a3", "s1", "Mayor praises bridge crews", 60, None, "en", None),
        ("b1", "s2", "Stadtrat beschliesst Haushalt", -2 * 24 * 60, None, "de", "rathaus"),
        *[(f"c{i}", "s3", f"Storm warning update {i}", -12 * 60 + 60 * i, None, "en", "rathaus") for i in range(4)],
    ]
    with open_warehouse(path) as connection:
        add_feed(connection, "https://city.example.org/rss", "City Desk", now)
        add_feed(connection, "https://rathaus.example.de/feed", "Rathaus", now)
        feeds = {"city": feed_id_for("https://city.example.org/rss"), "rathaus": feed_id_for("https://rathaus.example.de/feed")}
        for article_id, story_id, title, minutes, duplicate_of, language, feed in rows:
            published_at = START + timedelta(minutes=minutes)
            execute(
                connection,
                """
                INSERT INTO articles (article_id, url, canonical_url, title, published_at, ingested_at, text, text_hash,
                    language, source, duplicate_of, duplicate_kind, duplicate_similarity, story_id, feed_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    article_id, f"https://example.org/{article_id}", f"https://example.org/{article_id}", title,
                    published_at, published_at, f"text of {title}", f"hash-{article_id}", language,
                    "feed" if feed else "fixtures", duplicate_of, "copy" if duplicate_of else None,
                    0.91 if duplicate_of else None, story_id, feeds.get(feed),
                ],
            )
    return path


def headlines(app: AppTest) -> list[str]:
    """The headlines in the stories table."""
    return list(app.dataframe[0].value["headline"]) if app.dataframe else []


def test_stories_are_filtered_by_date_feed_and_language_and_ordered_by_growth(tmp_path, monkeypatch):
    database = filter_database(tmp_path / "filters.duckdb")
    app = open_page(monkeypatch, database)
    assert quiet(app)
    assert headlines(app) == ["Bridge reopens after repairs", "Storm warning update 0", "Stadtrat beschliesst Haushalt"]
    # Three days of data, shown by the hour: the bridge story's articles at 08:00, 08:30 and 09:00 on the last day.
    assert list(app.dataframe[0].value["timeline"][0]) == [0] * (48 + 8) + [2, 1] + [0] * 14
    assert list(app.dataframe[0].value["sources"]) == ["City Desk, example.org", "Rathaus", "Rathaus"]

    app.segmented_control[0].set_value("Fastest-growing").run()
    assert headlines(app) == ["Storm warning update 0", "Bridge reopens after repairs", "Stadtrat beschliesst Haushalt"]
    assert list(app.dataframe[0].value["last 24 h"]) == [4, 3, 0]

    app.multiselect[1].set_value(["de"]).run()
    assert headlines(app) == ["Stadtrat beschliesst Haushalt"]
    app.multiselect[1].set_value([]).run()

    app.multiselect[0].set_value([""]).run()  # articles from files, not feeds
    assert headlines(app) == ["Bridge reopens after repairs"]
    app.multiselect[0].set_value([feed_id_for("https://rathaus.example.de/feed")]).run()
    assert headlines(app) == ["Storm warning update 0", "Stadtrat beschliesst Haushalt"]
    app.multiselect[0].set_value([]).run()

    app.date_input[0].set_value((date(2024, 2, 8), date(2024, 2, 8))).run()
    assert headlines(app) == ["Stadtrat beschliesst Haushalt"]
    app.multiselect[1].set_value(["en"]).run()  # that day has only a German article
    assert texts(app.info) == ["No stories match these filters."]
    assert quiet(app)


def test_db_argument_wins_over_the_environment(seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSWATCH_DB", str(tmp_path / "elsewhere.duckdb"))
    app = open_page(monkeypatch, seeded["db"])
    assert quiet(app) and headlines(app) == [seeded["story"]["headline"]]

    assert snapshot.source_from_arguments([]) == snapshot.Source(tmp_path / "elsewhere.duckdb", 10.0)
    assert snapshot.source_from_arguments(["--db", "x.duckdb", "--lock-wait", "2.5"]) == snapshot.Source(Path("x.duckdb"), 2.5)
    assert snapshot.source_from_arguments(["--lock-wait", "soon"]).lock_wait == snapshot.DEFAULT_LOCK_WAIT_SECONDS


# Story detail


def test_story_detail_shows_articles_in_time_order_and_the_duplicate_beside_its_original(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "story", {"story": seeded["story"]["story_id"]})

    assert quiet(app) and not app.info
    assert data_as_of(app)
    assert texts(app.subheader)[0] == plain(seeded["story"]["headline"])
    assert [metric.value for metric in app.metric] == ["3", "2", "1", "1"]
    table = app.dataframe[0].value
    assert list(table["title"]) == [seeded[name]["title"] for name in ("original", "rewrite", "other")]
    assert list(table["source"]) == ["fixtures"] * 3
    similarity = seeded["rewrite"]["duplicate_similarity"]
    assert list(table["duplicate"]) == [
        "original", f"rewrite duplicate of: {seeded['original']['title']} ({similarity:.2f})", "original"
    ]
    summary = next(text for text in texts(app.markdown) if text.startswith("**rewrite**"))
    assert plain(f"similarity {similarity:.2f} (whole-article embedding cosine)") in summary
    assert "of words in common" in summary
    sides = [text for text in texts(app.markdown) if text.startswith(("**Original:**", "**Duplicate:**"))]
    assert [side.split(":**")[0] for side in sides] == ["**Original", "**Duplicate"]
    original_text, rewrite_text = (SEEDS / ORIGINAL).read_text(), (SEEDS / REWRITE).read_text()
    bodies = [html for html in texts(app.html) if "white-space: pre-wrap" in html]
    assert len(bodies) == 2
    assert "<del" in bodies[0] and "<ins" not in bodies[0]
    assert "<ins" in bodies[1] and "<del" not in bodies[1]
    # Words only the rewrite has are marked on its side ("renowned tech billionaire" is not in 000).
    assert "renowned" in rewrite_text and "renowned" not in original_text
    assert "renowned" in bodies[1].split("<ins", 1)[1]


def test_story_detail_without_a_story_id_shows_the_latest_and_an_unknown_id_says_so(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "story")
    assert quiet(app)
    assert texts(app.subheader)[0] == plain(seeded["story"]["headline"])

    app = open_page(monkeypatch, seeded["db"], "story", {"story": "no-such-story"})
    assert not app.exception and not app.error
    assert texts(app.warning) == [f"There is no story {plain('no-such-story')}; showing the most recent one instead."]
    assert texts(app.subheader)[0] == plain(seeded["story"]["headline"])


def test_word_difference_escapes_html_and_marks_both_sides():
    difference = word_difference("The <b>mayor</b> said yes.\n\nAll done.", "The <b>mayor</b> said no.\n\nAll done.")

    assert "<b>" not in difference.original_html and "&lt;b&gt;mayor&lt;/b&gt;" in difference.original_html
    assert "yes.</del>" in difference.original_html and "no.</ins>" in difference.duplicate_html
    assert "\n\nAll done." in difference.duplicate_html
    assert (difference.removed_words, difference.added_words) == (1, 1)
    assert difference.common_share == pytest.approx(5 / 6)


# Search


def result_titles(app: AppTest) -> list[str]:
    """The first line of each result, in order."""
    return [text.split("  \n")[0] for text in texts(app.markdown) if "  \n:gray[" in text]


def test_keyword_search_finds_the_seeds_grouped_by_story(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "search")
    app.text_input[0].set_value("musk GAZA").run()

    assert quiet(app) and not app.info
    assert data_as_of(app)
    assert "3 articles in 1 story" in texts(app.caption)
    assert [link.label for link in app.get("page_link")] == [f"**{plain(seeded['story']['headline'])}**"]
    assert sorted(result_titles(app)) == sorted(plain(seeded[name]["title"]) for name in ("original", "rewrite", "other"))

    app.text_input[0].set_value('"Walter Bloomberg"').run()
    assert result_titles(app) == [plain(seeded["other"]["title"])]
    assert any("rewrite duplicate" not in caption and "score 1" in caption for caption in texts(app.caption))


def test_keyword_search_binds_the_query_and_says_when_nothing_matches(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "search", {"q": "'; DROP TABLE articles; --"})

    assert quiet(app)
    terms = ["\"';\"", "'drop'", "'table'", "'articles;'", "'--'"]
    assert texts(app.info) == [f"No article contains {' and '.join(plain(term) for term in terms)}."]
    with open_warehouse(seeded["db"], read_only=True) as connection:
        assert execute(connection, "SELECT count(*) FROM articles") == [(3,)]
    app.text_input[0].set_value("100%_match").run()
    assert texts(app.info) == [f"No article contains {plain(repr('100%_match'))}."]


def test_semantic_search_embeds_the_query_with_the_same_model(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "search", {"mode": "Semantic", "q": "Musk declines an offer to tour Gaza"})

    assert quiet(app) and not app.info
    assert "3 articles in 1 story" in texts(app.caption)
    similarities = [
        float(caption.rsplit("similarity ", 1)[1].split(" ")[0]) for caption in texts(app.caption) if "similarity " in caption
    ]
    assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True) and similarities[-1] >= 0.3

    app.slider[0].set_value(0.95).run()
    assert texts(app.info) == ["No article is at least 0.95 similar to this query."]
    assert quiet(app)


# Feeds


def feed_database(path: Path) -> Path:
    """The seeds' story without its texts, three feeds (healthy, silent, failing), a failure."""
    now = datetime.now(UTC)
    with open_warehouse(path) as connection:
        feeds = {
            "https://news.example.org/rss.xml": ("Example News", 200, None, 2),
            "https://quiet.example.net/feed.atom": ("Quiet Gazette", 304, None, 0),
            "https://broken.example.com/feed.xml": (None, 500, "HTTP 500 Internal Server Error", 0),
        }
        for url, (name, *_) in feeds.items():
            add_feed(connection, url, name, now - timedelta(days=10))
        record_feed_outcomes(connection, [
            FeedOutcome(
                feed_id_for(url), now - timedelta(minutes=5), status, error, None, None, now + timedelta(minutes=10), new
            )
            for url, (_, status, error, new) in feeds.items()
        ])
        broken = "https://broken.example.com/feed.xml"
        record_fetch_failures(connection, [FetchFailure(broken, feed_id_for(broken), 500, feeds[broken][2], now)])
        for index in range(2):
            execute(
                connection,
                "INSERT INTO articles (article_id, url, canonical_url, title, ingested_at, text, text_hash, source,"
                " story_id, feed_id) VALUES (?, ?, ?, 'News', ?, 'text', ?, 'feed', ?, ?)",
                [
                    f"n{index}", f"https://news.example.org/{index}", f"https://news.example.org/{index}",
                    now - timedelta(hours=index), f"h{index}", f"n{index}", feed_id_for("https://news.example.org/rss.xml"),
                ],
            )
    return path


def test_feeds_page_shows_health_silent_and_failing_feeds_and_new_articles(tmp_path, monkeypatch):
    database = feed_database(tmp_path / "feeds.duckdb")
    app = open_page(monkeypatch, database, "feeds")

    assert not app.exception and not app.error
    assert data_as_of(app)
    assert [(metric.label, metric.value) for metric in app.metric] == [
        ("Feeds", "3"), ("OK", "1"), ("Failing", "1"), ("Silent", "1")
    ]
    assert texts(app.warning) == [
        "Failing feeds: " + plain("https://broken.example.com/feed.xml"), "Silent feeds: Quiet Gazette"
    ]
    health = app.dataframe[0].value
    assert list(health["feed"]) == ["Example News", "Quiet Gazette", "https://broken.example.com/feed.xml"]
    assert list(health["status"]) == ["ok", "silent", "failing"]
    assert list(health["failures in a row"]) == [0, 0, 1]
    assert list(health["attention"]) == ["", f"silent since {(datetime.now(UTC) - timedelta(days=10)):%Y-%m-%d}",
                                         "failing ×1: HTTP 500 Internal Server Error"]
    assert all(value.endswith(" UTC") for value in health["next due"])
    assert len(app.get("vega_lite_chart")) == 1
    assert "New articles per day of ingestion (UTC), by feed" in texts(app.caption)
    failures = app.dataframe[1].value
    assert list(failures["error"]) == ["HTTP 500 Internal Server Error"]


def test_feeds_page_without_feeds_says_how_to_add_one(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "feeds")

    assert quiet(app)
    assert texts(app.info) == ["No feeds yet: add one with `newswatch add-feed URL` or `newswatch import-opml FILE`."]
    # The seeds came from files: they are counted as such.
    assert len(app.get("vega_lite_chart")) == 1


# Runs


def test_runs_page_before_any_run_is_recorded(tmp_path, monkeypatch):
    app = open_page(monkeypatch, filter_database(tmp_path / "no-runs.duckdb"), "runs")

    assert quiet(app)
    assert data_as_of(app)
    assert len(app.info) == 1 and app.info[0].value.startswith("No runs recorded yet.")
    assert not app.dataframe


def test_runs_page_lists_runs_newest_first(tmp_path, monkeypatch):
    database = tmp_path / "runs.duckdb"
    with open_warehouse(database) as connection:
        record_run(connection, RunRecord(
            "r1", "ingest-fixtures", START, START + timedelta(seconds=42), "completed",
            new_articles=3, duplicates=1, new_stories=1,
        ))
        record_run(connection, RunRecord(
            "r2", "ingest-feeds", START + timedelta(hours=1), None, "failed", feeds_polled=5, errors=2, message="database busy"
        ))
    app = open_page(monkeypatch, database, "runs")

    assert quiet(app) and not app.info
    table = app.dataframe[0].value
    assert list(table["flow"]) == ["ingest-feeds", "ingest-fixtures"]
    assert list(table["status"]) == ["failed", "completed"]
    assert list(table["duration (m:s)"]) == ["", "0:42"]
    assert list(table["new articles"]) == [0, 3]
    assert list(table["message"]) == ["database busy", ""]
    assert [(metric.label, metric.value) for metric in app.metric][0] == ("Latest run", "failed")


# Hostile text: every string from a feed, a page or a file shows as plain text


# Markdown, HTML, KaTeX, Streamlit's directives and shortcodes, and what Streamlit rewrites in the
# parsed text (bare URLs, www. names and e-mail addresses become links, "->" and "--" arrows and dashes).
HOSTILE = (
    "Quokkagate ![x](http://127.0.0.1:9/pixel.png) [click](http://127.0.0.1:9/attack) :red[red] $x^2$ <b>bold</b> "
    "https://example.org/bare www.example.net press@example.com :material/home: :smile: :streamlit: **strong** "
    "_em_ `code` ~~gone~~ | a | -> -- >= &amp; <!-- c --> \\* 1. {x}"
)
# Any of these in a Markdown string would be HOSTILE's markup read as markup.
MARKUP = (
    "![", "](", ":red[", "$x^2$", "<b>", "://", "www.", "@example", ":material", ":smile:", ":streamlit:",
    "**strong", "`code`", "~~", "<!--", "-->",
)
JAVASCRIPT_URL = "javascript:alert(document.domain)//"
# The regular expressions Streamlit 1.67's Markdown applies to text after parsing (its frontend
# bundle, StreamlitMarkdown.*.js): GFM literal autolinks (URL, e-mail), emoji, icon and logo
# shortcodes, and typographic arrows and dashes.
STREAMLIT_TEXT_REWRITES = [
    re.compile(r"(https?://|www(?=\.))([-.\w]+)", re.IGNORECASE | re.ASCII),
    re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", re.ASCII),
    re.compile(r":[\w+-][\w_+-]*:", re.ASCII),
    re.compile(r":material[/_](\w+):", re.ASCII),
    re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)"),
]


def parsed_text(markdown: str) -> str:
    """The text a Markdown parser reads from a string whose every ASCII punctuation character is escaped."""
    characters, text = iter(markdown), []
    for character in characters:
        if character == "\\":
            character = next(characters)
            assert character in string.punctuation, markdown
        else:
            assert character not in string.punctuation, f"unescaped {character!r} in {markdown!r}"
        text.append(character)
    return "".join(text)


def test_plain_escapes_all_markdown_and_what_streamlit_rewrites_after_parsing():
    text = f"{HOSTILE}\n# heading\n\n    code block\n- item\nsetext\n===  \nWWW.EXAMPLE.NET <-> ~= <="
    shown = plain(text)

    parsed = parsed_text(shown)
    assert parsed.replace(WORD_JOINER, "") == " ".join(text.split())  # the same text, on one line
    for rewrite in STREAMLIT_TEXT_REWRITES:
        assert not rewrite.search(parsed), rewrite.pattern
    # A CommonMark parser (with GFM tables and strikethrough) finds one paragraph of text, no markup.
    markdown_it = pytest.importorskip("markdown_it")
    from markdown_it.common.utils import escapeHtml

    rendered = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(shown)
    assert rendered == f"<p>{escapeHtml(parsed)}</p>\n"
    assert plain(None) == plain("") == "(untitled)" and plain("", empty="") == ""
    assert plain("Quiet Gazette") == "Quiet Gazette"


def test_only_absolute_http_urls_become_links():
    for url in ("https://example.org/a?b=1#c", "http://127.0.0.1:8501/story", "HTTPS://EXAMPLE.ORG"):
        assert http_link(url) == url
    for url in (
        JAVASCRIPT_URL, "JavaScript:alert(1)", " https://example.org/", "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd", "//example.org/x", "/story?story=x", "https://", "https:// example.org", "", None,
    ):
        assert http_link(url) is None, url


def hostile_database(path: Path) -> Path:
    """A failing feed, a story of an article and its duplicate, a failure and a run, all named HOSTILE."""
    now = datetime.now(UTC)
    feed_url = "https://hostile.example.org/feed.xml"
    feed_id = feed_id_for(feed_url)
    with open_warehouse(path) as connection:
        add_feed(connection, feed_url, f"Feed {HOSTILE}", now - timedelta(days=10))
        add_feed(connection, JAVASCRIPT_URL, None, now - timedelta(days=10))
        error = f"HTTP 500 {HOSTILE}"
        record_feed_outcomes(connection, [
            FeedOutcome(feed_id, now - timedelta(minutes=5), 500, error, None, None, now + timedelta(minutes=10), 0)
        ])
        record_fetch_failures(connection, [FetchFailure(f"{feed_url}?{HOSTILE}", feed_id, 500, error, now)])
        for article_id, url, minutes, duplicate_of, image in (
            ("h1", JAVASCRIPT_URL, 0, None, '<img src="http://127.0.0.1:9/original.png">'),
            ("h2", "https://hostile.example.org/2", 30, "h1", '<img src="http://127.0.0.1:9/duplicate.png">'),
        ):
            execute(
                connection,
                """
                INSERT INTO articles (article_id, url, canonical_url, title, published_at, ingested_at, text, text_hash,
                    author, language, site_name, source, duplicate_of, duplicate_kind, duplicate_similarity, story_id,
                    feed_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    article_id, url, url, f"Title {HOSTILE}", START + timedelta(minutes=minutes), now,
                    f"Text of {article_id}: {HOSTILE}\n\n{image}", f"hash-{article_id}", HOSTILE, "en", f"Site {HOSTILE}",
                    "feed", duplicate_of,
                    "copy" if duplicate_of else None, 0.9 if duplicate_of else None, "hostile-story", feed_id,
                ],
            )
        record_run(connection, RunRecord(
            f"run {HOSTILE}", f"flow {HOSTILE}", now - timedelta(minutes=6), now - timedelta(minutes=5),
            f"status {HOSTILE}", message=f"message {HOSTILE}",
        ))
    return path


def markdown_texts(app: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's Markdown."""
    elements = [*app.title, *app.header, *app.subheader, *app.markdown, *app.caption, *app.info, *app.warning, *app.error]
    metrics = [text for metric in app.metric for text in (metric.label, metric.value)]
    return [*texts(elements), *(link.label for link in app.get("page_link")), *metrics]


def assert_plain(app: AppTest) -> None:
    """No Markdown string on the page carries HOSTILE's markup unescaped."""
    for text in markdown_texts(app):
        assert not [fragment for fragment in MARKUP if fragment in text], text


def links(column) -> list[str | None]:
    """A link column's cells, None where there is no link (pandas reads a missing one as NaN)."""
    return [value if isinstance(value, str) else None for value in column]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """The hostile database, built once for the module."""
    return hostile_database(tmp_path_factory.mktemp("hostile") / "hostile.duckdb")


def test_hostile_text_is_plain_on_the_stories_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile)

    assert quiet(app)
    assert headlines(app) == [f"Title {HOSTILE}"]  # a table cell shows text as it is
    assert list(app.dataframe[0].value["sources"]) == [f"Site {HOSTILE}"]
    assert_plain(app)


def test_hostile_text_is_plain_on_the_story_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile, "story", {"story": "hostile-story"})

    assert quiet(app)
    title = f"Title {HOSTILE}"
    assert texts(app.subheader)[0] == plain(title)
    assert any(caption.endswith(f"sources: {plain(f'Site {HOSTILE}')}") for caption in texts(app.caption))
    sides = [text for text in texts(app.markdown) if text.startswith(("**Original:**", "**Duplicate:**"))]
    assert sides == [f"**Original:** {plain(title)}", f"**Duplicate:** {plain(title)}"]
    assert [text for text in texts(app.caption) if text.startswith(plain(f"Site {HOSTILE}") + " · seen ")]
    table = app.dataframe[0].value
    assert list(table["title"]) == [title, title]
    assert list(table["source"]) == [f"Site {HOSTILE}"] * 2
    assert list(table["duplicate"]) == ["original", f"copy duplicate of: {title} (0.90)"]
    assert links(table["url"]) == [None, "https://hostile.example.org/2"]  # no javascript: link
    bodies = [html for html in texts(app.html) if "white-space: pre-wrap" in html]
    assert len(bodies) == 2
    for body in bodies:
        assert "<img" not in body and "<b>" not in body
        assert "&lt;img " in body and "src=&quot;http://127.0.0.1:9/" in body and "&lt;b&gt;bold&lt;/b&gt;" in body
    assert_plain(app)


def test_hostile_text_is_plain_on_the_search_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile, "search", {"q": "quokkagate"})

    assert quiet(app)
    assert [link.label for link in app.get("page_link")] == [f"**{plain(f'Title {HOSTILE}')}**"]
    assert result_titles(app) == [plain(f"Title {HOSTILE}")] * 2
    assert len([text for text in texts(app.caption) if text.startswith(plain(f"Site {HOSTILE}") + " · seen ")]) == 2
    assert_plain(app)

    # The query comes from the URL: a shared link must not bring markup either.
    query = "![x](http://127.0.0.1:9/query.png)"
    app = open_page(monkeypatch, hostile, "search", {"q": query})
    assert texts(app.info) == [f"No article contains {plain(repr(query))}."]
    assert_plain(app)


def test_hostile_text_is_plain_on_the_feeds_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile, "feeds")

    assert not app.exception and not app.error
    assert texts(app.warning) == ["Failing feeds: " + plain(f"Feed {HOSTILE}")]
    health = app.dataframe[0].value
    assert list(health["feed"]) == [f"Feed {HOSTILE}", JAVASCRIPT_URL]
    assert links(health["url"]) == ["https://hostile.example.org/feed.xml", None]  # no javascript: link
    assert list(health["attention"])[0] == f"failing ×1: HTTP 500 {HOSTILE}"
    failures = app.dataframe[1].value
    assert list(failures["error"]) == [f"HTTP 500 {HOSTILE}"]
    assert list(failures["feed"]) == [f"Feed {HOSTILE}"]
    assert_plain(app)


def test_hostile_text_is_plain_on_the_runs_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile, "runs")

    assert quiet(app)
    assert app.metric[0].value == plain(f"status {HOSTILE}")
    (caption,) = [text for text in texts(app.caption) if text.startswith("latest: ")]
    assert caption.startswith(f"latest: {plain(f'flow {HOSTILE}')} started ")
    assert caption.endswith(f" · run {plain(f'run {HOSTILE}')}")
    assert list(app.dataframe[0].value["message"]) == [f"message {HOSTILE}"]
    assert_plain(app)


def test_a_hostile_database_path_is_plain(tmp_path, monkeypatch):
    folder = tmp_path / "[x](http:" / "127.0.0.1:9)"
    folder.mkdir(parents=True)
    database = folder / "$x^2$ *news*.duckdb"

    app = open_page(monkeypatch, database, "stories")

    assert texts(app.info) == [snapshot.missing_database_message(database)]
    assert plain(str(database)) in app.info[0].value
    assert app.sidebar.caption[0].value == f"newswatch · {plain(str(database))} (read-only)"
    assert_plain(app)


# Empty and broken databases


EMPTY_MESSAGES = {
    "stories": "No stories yet: run `newswatch run` (feeds) or `newswatch run --fixtures DIR` (files) first.",
    "story": "No stories yet: run `newswatch run` (feeds) or `newswatch run --fixtures DIR` (files) first.",
    "feeds": "No feeds yet: add one with `newswatch add-feed URL` or `newswatch import-opml FILE`.",
    "search": f"No article contains {plain(repr('gaza'))}.",
}


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_database(page, tmp_path, monkeypatch):
    database = tmp_path / "empty.duckdb"
    with open_warehouse(database):
        pass

    app = open_page(monkeypatch, database, page, {"q": "gaza"})

    assert quiet(app)
    if page == "runs":
        assert app.info[0].value.startswith("No runs recorded yet.")
    else:
        assert texts(app.info) == [EMPTY_MESSAGES[page]]
    assert not app.dataframe


@pytest.mark.parametrize("page", PAGES)
def test_a_missing_database(page, tmp_path, monkeypatch):
    database = tmp_path / "missing.duckdb"

    app = open_page(monkeypatch, database, page, {"q": "gaza"})

    assert quiet(app)
    assert texts(app.info) == [snapshot.missing_database_message(database)]
    assert not database.exists()


def older_database(path: Path) -> Path:
    """A database that stopped at migration 2 (before the runs table)."""
    connection = duckdb.connect(str(path))
    execute(
        connection,
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    for migration in MIGRATIONS[:2]:
        execute(connection, migration.sql)
        execute(connection, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [migration.version, migration.name])
    connection.close()
    return path


@pytest.mark.parametrize("page", PAGES)
def test_a_database_of_an_older_schema(page, tmp_path, monkeypatch):
    database = older_database(tmp_path / "old.duckdb")

    app = open_page(monkeypatch, database, page, {"q": "gaza"})

    assert not app.exception and not app.warning
    assert texts(app.error) == [
        plain(f"database {database} has schema version 2; run `newswatch run` to upgrade it to {MIGRATIONS[-1].version}")
    ]
    assert not app.dataframe


def test_a_file_that_is_not_a_database(tmp_path, monkeypatch):
    database = tmp_path / "notes.duckdb"
    database.write_bytes(b"these are my notes, not a database\n" * 200)

    app = open_page(monkeypatch, database)

    assert not app.exception
    assert len(app.error) == 1 and plain(str(database)) in app.error[0].value
    assert not app.dataframe and not app.info


# Beside a writer


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the database for writing and keeps it open this long."""
    script = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('locked', flush=True); time.sleep({seconds})"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_waits_for_a_writer_to_finish(tmp_path, monkeypatch):
    database = filter_database(tmp_path / "x.duckdb")
    writer = hold_write_lock(database, seconds=1.0)
    try:
        app = open_page(monkeypatch, database)
    finally:
        writer.wait(timeout=30)

    assert quiet(app)
    assert len(headlines(app)) == 3


def test_a_long_write_shows_a_notice_and_the_last_data_never_a_lock_error(tmp_path, monkeypatch):
    database = filter_database(tmp_path / "x.duckdb")
    writer = hold_write_lock(database, seconds=60)
    try:
        app = open_page(monkeypatch, database, "stories", None, "--lock-wait", "0.5")
        assert not app.exception and not app.error and not app.dataframe
        assert texts(app.warning) == [
            "The pipeline is writing to the database right now; this page will show its data as soon as the run "
            "has finished. Refresh in a few seconds."
        ]
    finally:
        writer.kill()
        writer.wait(timeout=30)

    app = open_page(monkeypatch, database, "stories", None, "--lock-wait", "0.5")
    assert quiet(app) and len(headlines(app)) == 3
    snapshot.refresh()  # the cached copy is gone: the next run must read again
    writer = hold_write_lock(database, seconds=60)
    try:
        app.run()
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert not app.exception and not app.error
    (notice,) = texts(app.warning)
    assert notice.startswith("The pipeline is writing to the database right now: showing data as of ")
    assert "lock" not in notice.lower()
    assert len(headlines(app)) == 3


READER = """
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path
from dashboards import reads
from dashboards.snapshot import Source, read_snapshot

source, stop, model = Source(Path(sys.argv[1]), lock_wait=60), Path(sys.argv[2]), sys.argv[3]
since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
readers = [
    (reads.read_facets,),
    (reads.read_stories, since, until, None, None, "recent", since, "week", 50),
    (reads.read_story, None),
    (reads.read_feeds, "day", since, 20),
    (reads.read_runs, 100),
    (reads.read_keyword_search, ("gaza",), 50),
    (reads.read_vectors, model),
]
done, errors, story_counts = 0, [], []
print("reading", flush=True)
finished = False
while not finished:
    finished = stop.exists()  # one more full pass after the writer is done
    for reader, *arguments in readers:
        try:
            data = read_snapshot(source, reader, *arguments).data
            done += 1
            if reader is reads.read_stories:
                story_counts.append(len(data["stories"]))
        except Exception as error:
            errors.append(f"{reader.__name__}: {type(error).__name__}: {error}")
        time.sleep(0.02)
print(json.dumps({"reads": done, "errors": errors, "story_counts": story_counts}))
"""


def test_dashboard_reads_in_a_loop_while_an_ingest_run_writes(tmp_path):
    database = tmp_path / "busy.duckdb"
    with open_warehouse(database):
        pass
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(database), str(stop), embedding_model_key(Settings())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert reader.stdout.readline().strip() == "reading"
        summary = ingest_fixtures(SEEDS, database, Settings())
    finally:
        stop.touch()
        output, errors = reader.communicate(timeout=120)

    assert (summary.new_articles, summary.duplicates, summary.new_stories) == (3, 1, 1)
    assert reader.returncode == 0, errors
    report = json.loads(output.strip().splitlines()[-1])
    assert report["errors"] == []
    # The reader saw the database both before and after the run's load. (How many passes fit
    # inside the run depends on its speed: with Prefect and the model already warm in this
    # process, a run over the seeds can finish within the reader's first pass.)
    assert report["story_counts"][0] == 0 and report["story_counts"][-1] == 1
    assert len(report["story_counts"]) >= 2 and report["reads"] == 7 * len(report["story_counts"])
