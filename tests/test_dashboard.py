"""The Streamlit dashboard, driven headless with AppTest.

Most tests read one database built once for the module by the real ingest flow from the seed
articles (000 original, 001 its rewrite, 002 another report of the same event); the flow also
builds its full-text index. The Watches page reads another such database, with watches added
before the run, so that the run itself decides the alerts and attempts their deliveries (to a
local webhook receiver and to a closed port). Filters, feed health and runs use small databases
written through the warehouse's own functions; broken states use broken files; the concurrency
test reads in another process while the flow writes.
"""

import json
import re
import socket
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
from extract.search_index import read_state
from flows.ingest import ingest_fixtures
from flows.embedding import embedding_model_key, get_embedder
from flows.alerts import record_alerts
from flows.search import sync_search_index
from flows.settings import Settings
from reading.search import search_folder
from monitoring.notification_urls import mask_url
from tests.receivers import make_webhook_fixture
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, FetchFailure, add_feed, feed_id_for, record_fetch_failures, record_feed_outcomes
from warehouse.migrations import MIGRATIONS
from warehouse.queries import list_stories, story_articles
from warehouse.runs import RunRecord, record_run
from warehouse.vector_index import index_folder
from warehouse.sql import execute, transaction
from warehouse.watches import ArticleMatch, DeliveryAttempt, add_watch, record_delivery_attempts

ROOT = Path(__file__).parent.parent
APP = str(ROOT / "dashboards" / "app.py")
PAGES = {
    "stories": "stories_page.py",
    "story": "story_page.py",
    "feeds": "feeds_page.py",
    "search": "search_page.py",
    "watches": "watches_page.py",
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
    assert snapshot.source_from_arguments(["--lock-wait", "soon"]).lock_wait == snapshot.PAGE_LOCK_WAIT_SECONDS


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
    assert plain(f"score {similarity:.2f} (probability of the rewrite model)") in summary
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


def snippets(app: AppTest) -> list[str]:
    """The snippet under each result, as the Markdown handed to Streamlit."""
    return [text.split("  \n:gray[", 1)[1].removesuffix("]") for text in texts(app.markdown) if "  \n:gray[" in text]


def bold_words(markdown: str) -> list[str]:
    """The words a snippet shows in bold (without the escapes)."""
    return [parsed_text(word) for word in re.findall(r"\*\*(.+?)\*\*", markdown)]


def files_of(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under these folders (or these files) with its modification time and size."""
    paths = [path for folder in folders for path in ([folder] if folder.is_file() else folder.rglob("*"))]
    return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in paths if path.is_file()}


def test_keyword_search_reads_the_index_the_run_built_and_groups_by_story(seeded, monkeypatch):
    state = read_state(search_folder(seeded["db"]))
    assert state is not None and state.documents == 3  # the ingest run brought the index up to date
    app = open_page(monkeypatch, seeded["db"], "search")
    app.text_input[0].set_value("musk GAZA").run()

    assert quiet(app) and not app.info
    assert data_as_of(app)
    assert "3 articles in 1 story" in texts(app.caption)
    links = app.get("page_link")
    assert [link.label for link in links] == [f"**{plain(seeded['story']['headline'])}**"]
    assert [link.proto.query_string for link in links] == [f"story={seeded['story']['story_id']}"]
    assert sorted(result_titles(app)) == sorted(plain(seeded[name]["title"]) for name in ("original", "rewrite", "other"))
    scores = [float(caption.rsplit("score ", 1)[1].split(" ")[0]) for caption in texts(app.caption) if " · score " in caption]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and scores[-1] > 0

    # Words match whatever their case and ending, and the words that matched are in bold.
    app.text_input[0].set_value("INVITATIONS").run()
    assert quiet(app) and len(result_titles(app)) == 3
    for snippet in snippets(app):
        words = bold_words(snippet)
        assert words and all(word.lower().startswith("invit") for word in words), snippet


def test_keyword_search_of_a_phrase_and_without_a_word(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "search", {"q": '"Walter Bloomberg"'})

    assert quiet(app)
    assert result_titles(app) == [plain(seeded["other"]["title"])]
    assert "**Walter** **Bloomberg**" in snippets(app)[0]
    assert "1 article in 1 story" in texts(app.caption)

    for query in ("musk NOT bloomberg", 'musk -"walter bloomberg"', "(hamas OR kibbutz) AND musk NOT bloomberg"):
        app.text_input[0].set_value(query).run()
        assert quiet(app), query
        assert sorted(result_titles(app)) == sorted(plain(seeded[name]["title"]) for name in ("original", "rewrite")), query
    # What a query leaves out is not highlighted.
    assert not [snippet for snippet in snippets(app) if "bloomberg" in " ".join(bold_words(snippet)).lower()]


def test_keyword_search_binds_the_query_and_says_when_nothing_matches(seeded, monkeypatch):
    query = "'; DROP TABLE articles; --"
    app = open_page(monkeypatch, seeded["db"], "search", {"q": query})

    assert quiet(app)
    assert texts(app.info) == [f"No article matches {plain(repr(query))}."]
    with open_warehouse(seeded["db"], read_only=True) as connection:
        assert execute(connection, "SELECT count(*) FROM articles") == [(3,)]
    app.text_input[0].set_value("100%_match").run()
    assert texts(app.info) == [f"No article matches {plain(repr('100%_match'))}."]


def test_a_query_that_does_not_parse_says_why(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "search", {"q": "(musk gaza"})

    assert not app.exception and not app.warning and not app.info
    assert texts(app.error) == [plain("This query cannot be searched: unbalanced parenthesis at character 1.")]
    assert not result_titles(app)
    for query, reason in (
        ("musk AND", "AND at character 6 needs a word, phrase or group on its right"),
        ('"elon musk', "unterminated quote at character 1"),
        ("NOT musk", "a query needs at least one word or phrase that is not negated"),
    ):
        app.text_input[0].set_value(query).run()
        assert texts(app.error) == [plain(f"This query cannot be searched: {reason}.")], query
        assert not result_titles(app)


def test_keyword_search_without_an_index_says_the_next_run_builds_it(tmp_path, monkeypatch):
    database = filter_database(tmp_path / "no-index.duckdb")  # written directly: no run built an index

    app = open_page(monkeypatch, database, "search", {"q": "bridge"})

    assert quiet(app)
    assert texts(app.info) == ["There is no search index yet: the next ingest run (`newswatch run`) builds it."]
    assert not search_folder(database).exists()  # the dashboard does not build it


def since_database(path: Path) -> Path:
    """Four articles about a harbour, seen 2 hours, 3 days, 20 days and 90 days ago, and their search index."""
    now = datetime.now(UTC)
    with open_warehouse(path) as connection:
        for article_id, word, age in (
            ("t1", "alpha", timedelta(hours=2)), ("t2", "bravo", timedelta(days=3)),
            ("t3", "charlie", timedelta(days=20)), ("t4", "delta", timedelta(days=90)),
        ):
            execute(
                connection,
                "INSERT INTO articles (article_id, url, canonical_url, title, published_at, ingested_at, text, text_hash,"
                " source, story_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'fixtures', ?)",
                [
                    article_id, f"https://example.org/{article_id}", f"https://example.org/{article_id}",
                    f"Harbour news {word}", now - age, now - age, f"The harbour reopened ({word}).", f"hash-{article_id}",
                    f"story-{article_id}",
                ],
            )
    sync_search_index(path, Settings())  # the ingest runs' job
    return path


def test_keyword_search_since_a_time_bound_to_the_url(tmp_path, monkeypatch):
    database = since_database(tmp_path / "since.duckdb")
    app = open_page(monkeypatch, database, "search", {"q": "harbours"})

    assert quiet(app)
    assert app.segmented_control[1].value == "all"
    assert "4 articles in 4 stories" in texts(app.caption)
    for window, titles in (("24h", ["alpha"]), ("7d", ["alpha", "bravo"]), ("30d", ["alpha", "bravo", "charlie"])):
        app.segmented_control[1].set_value(window).run()
        assert quiet(app), window
        assert sorted(result_titles(app)) == [f"Harbour news {title}" for title in titles], window

    app = open_page(monkeypatch, database, "search", {"q": "delta", "since": "30d"})
    assert app.segmented_control[1].value == "30d"
    assert texts(app.info) == [f"No article matches {plain(repr('delta'))} seen in the last 30d."]
    app.segmented_control[1].set_value("all").run()
    assert result_titles(app) == ["Harbour news delta"]


def test_semantic_search_embeds_the_query_and_reads_the_vector_index(seeded, monkeypatch):
    indexes = files_of(seeded["db"], search_folder(seeded["db"]), index_folder(seeded["db"]))
    assert any(path.endswith(".faiss") for path in indexes)  # the ingest run saved the vector index
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
    app.slider[0].set_value(0.3).run()
    app.segmented_control[1].set_value("7d").run()  # the seeds are from 2023
    assert texts(app.info) == ["No article seen in the last 7d is at least 0.30 similar to this query."]
    # Searching wrote nothing: not the database, not its indexes.
    assert files_of(seeded["db"], search_folder(seeded["db"]), index_folder(seeded["db"])) == indexes


# Watches


SECRET = "hunter2-Zq8xKp3mW9"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


webhook = make_webhook_fixture(scope="module")


@pytest.fixture(scope="module")
def watched(tmp_path_factory, webhook) -> dict:
    """Three watches added, then the seeds ingested by the real flow, which decides and delivers the alerts.

    "musk-gaza" notifies the webhook receiver (delivered) and a closed port (failed for good, at
    the first attempt); "declines" matches by meaning and notifies nobody; "quiet" matches nothing.
    Both URLs carry SECRET.
    """
    db = tmp_path_factory.mktemp("watched") / "newswatch.duckdb"
    settings = Settings(allow_private_networks=True, alert_max_attempts=1)
    urls = [f"json://newswatch:{SECRET}@127.0.0.1:{webhook.port}/hook", f"json://127.0.0.1:{closed_port()}/hook?+X-Token={SECRET}"]
    like = "Musk turns down an invitation to visit Gaza"
    now = datetime.now(UTC)
    watches = {}
    with open_warehouse(db) as connection, transaction(connection):
        for name, query, like_text, min_articles, notify in (
            ("musk-gaza", '"Elon Musk" AND Gaza', None, 2, urls),
            ("declines", None, like, 1, []),
            ("quiet", "quokkagate OR zeppelin", None, 1, []),
        ):
            watches[name] = add_watch(
                connection, name, query=query, like_text=like_text,
                like_vector=get_embedder(settings).embed([like_text])[0][0] if like_text else None,
                like_model=embedding_model_key(settings) if like_text else None,
                min_articles=min_articles, min_sources=1, notify_urls=notify, now=now,
            )
    summary = ingest_fixtures(SEEDS, db, settings)
    assert (summary.new_articles, summary.new_stories) == (3, 1)
    with open_warehouse(db, read_only=True) as connection:
        (story,) = list_stories(connection)
    return {"db": db, "watches": watches, "urls": urls, "story": story}


def every_proto(node):
    """The protobuf message of every block and element below a node of the AppTest tree."""
    if getattr(node, "proto", None) is not None:
        yield node.proto
    for child in getattr(node, "children", {}).values():
        yield from every_proto(child)


def assert_secret_never_shown(app: AppTest, secret: str) -> None:
    """The secret is in nothing the page sends to the browser: text, tables (their Arrow bytes), widgets."""
    protos = [*every_proto(app.main), *every_proto(app.sidebar)]
    assert protos
    assert not [proto for proto in protos if secret.encode() in proto.SerializeToString()]


def delivery_lines(app: AppTest) -> list[str]:
    """The Markdown of each delivery line under the alerts."""
    return [text for text in texts(app.markdown) if text.startswith((":green[", ":orange[", ":red[", ":gray["))]


def test_watches_page_shows_watches_masked_urls_alerts_and_failed_deliveries(watched, webhook, monkeypatch):
    app = open_page(monkeypatch, watched["db"], "watches")

    assert not app.exception and not app.warning and not app.info
    assert data_as_of(app)
    assert [(metric.label, metric.value) for metric in app.metric] == [
        ("Watches", "3"), ("Alerts", "2"), ("Delivered", "1"), ("Pending", "0"), ("Failed", "1")
    ]
    delivered, failed = watched["urls"]
    (banner,) = texts(app.error)
    assert banner.startswith("1 delivery failed for good. Latest error (")
    assert plain(mask_url(failed)) in banner
    table = app.dataframe[0].value
    assert list(table.columns) == [
        "id", "watch", "looks for", "alerts when", "notifies", "last match (UTC)", "last story", "stories matched",
        "alerts", "deliveries", "last error",
    ]
    rows = {row["watch"]: row for row in table.to_dict("records")}
    assert list(rows) == ["musk-gaza", "declines", "quiet"]
    gaza, declines, quiet_watch = rows.values()
    assert gaza["id"] == watched["watches"]["musk-gaza"]
    assert gaza["looks for"] == 'query: "Elon Musk" AND Gaza'
    assert declines["looks for"] == "like: Musk turns down an invitation to visit Gaza"
    assert gaza["alerts when"] == "≥ 2 articles from ≥ 1 source"
    assert gaza["notifies"] == f"{mask_url(delivered)}, {mask_url(failed)}" and "****" in gaza["notifies"]
    assert (declines["notifies"], quiet_watch["notifies"]) == ("—", "—")
    assert [row["last story"] for row in rows.values()] == [watched["story"]["headline"]] * 2 + [""]
    assert [row["stories matched"] for row in rows.values()] == [1, 1, 0]
    assert [row["alerts"] for row in rows.values()] == [1, 1, 0]
    assert gaza["deliveries"] == "1 delivered, 0 pending, 1 failed"
    assert gaza["last error"] and quiet_watch["last error"] == "" and quiet_watch["last match (UTC)"] == "—"

    # The alerts, newest first: each links to its story, says what it was and how its deliveries went.
    assert texts(app.subheader) == ["Recent alerts"]
    links = app.get("page_link")
    assert [link.label for link in links] == [f"**{plain(watched['story']['headline'])}**"] * 2
    assert {link.proto.query_string for link in links} == {f"story={watched['story']['story_id']}"}
    captions = [text for text in texts(app.caption) if text.startswith("new · watch ")]
    assert sorted(caption.split(" · ")[1] for caption in captions) == ["watch declines", "watch musk\\-gaza"]
    assert all(" · when alerted 3 articles from 1 source · " in caption for caption in captions)
    assert "No notification URL: the alert is stored only." in texts(app.caption)
    lines = {line.split("]", 1)[0]: line for line in delivery_lines(app)}
    assert sorted(lines) == [":green[**delivered**", ":red[**failed**"]
    assert lines[":green[**delivered**"].startswith(f":green[**delivered**] {plain(mask_url(delivered))} · 1 attempt · delivered ")
    assert lines[":red[**failed**"].startswith(f":red[**failed**] {plain(mask_url(failed))} · 1 attempt · last error: ")
    assert len(webhook.received) == 1  # the run delivered it, the page sent nothing
    assert_secret_never_shown(app, SECRET)


def test_watches_page_filters_the_alerts_by_watch_bound_to_the_url(watched, monkeypatch):
    gaza, quiet_watch = watched["watches"]["musk-gaza"], watched["watches"]["quiet"]
    app = open_page(monkeypatch, watched["db"], "watches", {"watch": str(gaza)})

    assert not app.exception and not app.warning
    assert app.selectbox[0].value == gaza
    declines = watched["watches"]["declines"]
    assert app.selectbox[0].options == [
        "All watches", f"musk-gaza (#{gaza})", f"declines (#{declines})", f"quiet (#{quiet_watch})"
    ]
    assert len(app.get("page_link")) == 1 and len(delivery_lines(app)) == 2

    app.selectbox[0].set_value(quiet_watch).run()
    assert app.query_params["watch"] == str(quiet_watch)
    assert texts(app.info) == ["No alerts from this watch yet: a watch alerts when a run stores a story it matches."]
    assert not app.get("page_link")
    app.selectbox[0].set_value("all").run()
    assert "watch" not in app.query_params
    assert len(app.get("page_link")) == 2

    app = open_page(monkeypatch, watched["db"], "watches", {"watch": "99"})
    assert texts(app.warning) == ["There is no watch 99; showing the alerts of every watch."]
    assert app.selectbox[0].value == "all" and len(app.get("page_link")) == 2


def test_watches_page_warns_of_deliveries_being_retried_not_of_those_delivered_since(tmp_path, monkeypatch):
    database = filter_database(tmp_path / "retried.duckdb")
    urls = [f"json://127.0.0.1:9/{name}?+X-Token={SECRET}" for name in ("recovered", "down")]
    with open_warehouse(database) as connection, transaction(connection):
        watch_id = add_watch(
            connection, "bridge", query="bridge", like_text=None, like_vector=None, like_model=None,
            min_articles=1, min_sources=1, notify_urls=urls, now=START,
        )
        (alert_id,) = record_alerts(connection, [ArticleMatch(watch_id, "a1", "s1")], ["s1"], START, 2.0)
        for minutes, outcomes in ((1, (False, False)), (5, (True, False))):  # as two runs would record them
            record_delivery_attempts(
                connection,
                [
                    DeliveryAttempt(alert_id, url, ok, None if ok else "HTTP 503 Service Unavailable", START + timedelta(minutes=minutes))
                    for url, ok in zip(urls, outcomes)
                ],
                first_retry=60, max_retry=3600, max_attempts=5,
            )

    app = open_page(monkeypatch, database, "watches")

    assert not app.exception and not app.error and not app.info
    assert [metric.value for metric in app.metric] == ["1", "1", "1", "1", "0"]
    assert texts(app.warning) == [
        "1 delivery failed and will be retried by a later run. Latest error (2024-02-10 08:05 UTC, "
        f"{plain(mask_url(urls[1]))}): HTTP 503 Service Unavailable"
    ]
    recovered, down = sorted(delivery_lines(app), key=lambda line: "recovered" not in line)
    assert recovered == (
        f":green[**delivered**] {plain(mask_url(urls[0]))} · 2 attempts · delivered 2024-02-10 08:05 UTC · "
        "earlier error: HTTP 503 Service Unavailable"
    )
    assert down == (
        f":orange[**pending**] {plain(mask_url(urls[1]))} · 2 attempts · next attempt 2024-02-10 08:07 UTC · "
        "last error: HTTP 503 Service Unavailable"
    )
    assert_secret_never_shown(app, SECRET)


def test_watches_page_without_watches_says_how_to_add_one(seeded, monkeypatch):
    app = open_page(monkeypatch, seeded["db"], "watches")

    assert quiet(app) and data_as_of(app)
    assert texts(app.info) == [EMPTY_MESSAGES["watches"]]
    assert not app.dataframe


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


# A notification URL with a secret in it, as a watch stores it.
HOSTILE_NOTIFY_URL = f"json://user:{SECRET}@hostile.example.org/hook"


def hostile_database(path: Path) -> Path:
    """A failing feed, a story of an article and its duplicate, a failure, a run and a watch with an alert, all named HOSTILE.

    The watch's alert (decided by `record_alerts`, as a run would) has a delivery that failed once
    with a HOSTILE error and waits for its next attempt.
    """
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
        with transaction(connection):
            watch_id = add_watch(
                connection, f"Watch {HOSTILE}", query="quokkagate", like_text=None, like_vector=None, like_model=None,
                min_articles=1, min_sources=1, notify_urls=[HOSTILE_NOTIFY_URL], now=now - timedelta(minutes=4),
            )
            (alert_id,) = record_alerts(
                connection, [ArticleMatch(watch_id, "h1", "hostile-story")], ["hostile-story"], now - timedelta(minutes=3), 2.0
            )
            record_delivery_attempts(
                connection, [DeliveryAttempt(alert_id, HOSTILE_NOTIFY_URL, False, f"HTTP 500 {HOSTILE}", now - timedelta(minutes=2))],
                first_retry=60, max_retry=3600, max_attempts=3,
            )
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
    """The hostile database, built once for the module, with the search index the next run would build."""
    path = hostile_database(tmp_path_factory.mktemp("hostile") / "hostile.duckdb")
    sync_search_index(path, Settings())
    return path


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
    assert texts(app.info) == [f"No article matches {plain(repr(query))}."]
    assert_plain(app)
    app = open_page(monkeypatch, hostile, "search", {"q": f'"{HOSTILE}'})  # its quote is never closed
    assert texts(app.error) == [plain("This query cannot be searched: unterminated quote at character 1.")]
    assert_plain(app)


def test_hostile_text_is_plain_on_the_watches_page(hostile, monkeypatch):
    app = open_page(monkeypatch, hostile, "watches")

    assert not app.exception and not app.error and not app.info
    (notice,) = texts(app.warning)
    assert notice.startswith("1 delivery failed and will be retried by a later run. Latest error (")
    assert notice.endswith(f"{plain(mask_url(HOSTILE_NOTIFY_URL))}): {plain(f'HTTP 500 {HOSTILE}')}")
    (row,) = app.dataframe[0].value.to_dict("records")  # a table cell shows text as it is
    assert (row["watch"], row["last story"], row["notifies"]) == (
        f"Watch {HOSTILE}", f"Title {HOSTILE}", mask_url(HOSTILE_NOTIFY_URL)
    )
    assert row["last error"].endswith(f": HTTP 500 {HOSTILE}") and row["deliveries"] == "0 delivered, 1 pending, 0 failed"
    assert app.selectbox[0].options == ["All watches", f"Watch {HOSTILE} (#{row['id']})"]
    assert [link.label for link in app.get("page_link")] == [f"**{plain(f'Title {HOSTILE}')}**"]
    (caption,) = [text for text in texts(app.caption) if text.startswith("new · watch ")]
    assert caption.startswith(f"new · watch {plain(f'Watch {HOSTILE}')} · when alerted 2 articles from 1 source · ")
    (line,) = delivery_lines(app)
    assert line.startswith(f":orange[**pending**] {plain(mask_url(HOSTILE_NOTIFY_URL))} · 1 attempt · next attempt ")
    assert line.endswith(f" · last error: {plain(f'HTTP 500 {HOSTILE}')}")
    assert_plain(app)
    assert_secret_never_shown(app, SECRET)


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
    "search": "There is no search index yet: the next ingest run (`newswatch run`) builds it.",
    "watches": "No watches yet: `newswatch add-watch NAME --query QUERY` (or `--like DESCRIPTION`) adds one.",
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
from reading.search import VectorIndexSettings

source, stop, model, dimension = Source(Path(sys.argv[1]), lock_wait=60), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
vector = (1.0,) + (0.0,) * (dimension - 1)
readers = [
    (reads.read_facets,),
    (reads.read_stories, since, until, None, None, "recent", since, "week", 50),
    (reads.read_story, None),
    (reads.read_feeds, "day", since, 20),
    (reads.read_runs, 100),
    (reads.read_keyword_search, source.path, "gaza", None, 50),
    (reads.read_semantic_search, source.path, VectorIndexSettings(model, None, 50_000, 512), vector, None, 50),
    (reads.read_watches, None, 50),
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
        [
            sys.executable, "-c", READER, str(database), str(stop), embedding_model_key(Settings()),
            str(get_embedder(Settings()).dimension),
        ],
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
    assert len(report["story_counts"]) >= 2 and report["reads"] == 8 * len(report["story_counts"])


# What the dashboard imports


PAGES_ALONE = """
import json, sys
import flows.settings
from streamlit.testing.v1 import AppTest

reads = []
load_settings = flows.settings.load_settings
flows.settings.load_settings = lambda **overrides: reads.append(overrides) or load_settings(**overrides)
sys.argv = ["dashboards/app.py", "--db", sys.argv[1]]
app = AppTest.from_file("dashboards/app.py", default_timeout=60)
app.run()
settings_reads = {}
for page, query in [("stories_page.py", {}), ("story_page.py", {}), ("feeds_page.py", {}), ("watches_page.py", {}),
                    ("runs_page.py", {}), ("search_page.py", {"q": "gaza"}), ("search_page.py", {"mode": "Semantic", "q": "gaza"})]:
    reads.clear()
    app.query_params.clear()
    app.query_params.update(query)
    app.switch_page(page).run()
    assert not app.exception, (page, app.exception)
    settings_reads[page + str(query)] = len(reads)
modules = [name for name in sys.modules if name.split(".")[0] in ("flows", "prefect")]
print(json.dumps({"modules": sorted(modules), "settings_reads": settings_reads}))
"""


def test_the_dashboard_imports_no_orchestration_and_reads_the_settings_once_a_run(tmp_path):
    """Its pages read through the warehouse, the library and `reading/`; of `flows/` only the settings, read once."""
    result = subprocess.run([sys.executable, "-c", PAGES_ALONE, str(tmp_path / "missing.duckdb")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] == ["flows", "flows.settings"]
    assert set(report["settings_reads"].values()) == {1}, report["settings_reads"]
