"""Every real feed file of the evaluation corpora, served over HTTP, through a whole feed run."""

import mimetypes
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest_feeds
from flows.settings import Settings
from tests.http_server import make_server_fixture, static
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed

EVAL = Path(__file__).parents[2] / "shared" / "eval"
CORPORA = ("C1_feedparser_tests", "C2_feedjira_sample_feeds", "C3_node_feedparser_feeds")

http_server = make_server_fixture()


def test_every_corpus_feed_gives_entries_or_a_recorded_error(tmp_path, http_server, prefect_server):
    files = sorted(
        path for name in CORPORA if (EVAL / name / "dev").is_dir()
        for path in (EVAL / name / "dev").rglob("*") if path.is_file() and path.name != "index.jsonl"
    )
    if not files:
        pytest.skip(f"evaluation corpora not found under {EVAL}")
    db = tmp_path / "nw.duckdb"
    now = datetime.now(UTC)
    with open_warehouse(db) as connection:
        for path in files:
            route = "/" + path.relative_to(EVAL).as_posix()
            kind = "application/feed+json" if path.suffix == ".json" else mimetypes.guess_type(path.name)[0]
            http_server.route(route, static(path.read_bytes(), kind or "application/xml"))
            add_feed(connection, http_server.url(route), None, now)
    # Feed text only: the corpora's entries link to hosts a test must never contact.
    settings = Settings(
        allow_private_networks=True, fetch_pages=False, fetch_host_delay=0, fetch_host_concurrency=8,
    )

    summary = ingest_feeds(db, settings)

    connection = duckdb.connect(str(db), read_only=True)
    try:
        feeds = connection.execute(
            "SELECT url, last_status, last_error, last_fetched_at FROM feeds"
        ).fetchall()
        failed = {row[0] for row in connection.execute("SELECT url FROM fetch_failures").fetchall()}
        feeds_with_articles = connection.execute(
            "SELECT count(DISTINCT feed_id) FROM articles"
        ).fetchone()[0]
        # An ill-formed feed is an error only when nothing could be recovered from it.
        errored_with_articles = connection.execute(
            "SELECT count(*) FROM feeds WHERE last_error IS NOT NULL"
            " AND feed_id IN (SELECT feed_id FROM articles)"
        ).fetchone()[0]
        articles = connection.execute("SELECT count(*) FROM articles").fetchone()[0]
    finally:
        connection.close()
    assert summary.feeds_polled == len(files) == len(feeds)
    assert all(fetched_at is not None and status == 200 for _, status, _, fetched_at in feeds)
    errored = {url for url, _, error, _ in feeds if error}
    assert errored == failed  # every feed error is a fetch_failures row too
    assert errored_with_articles == 0
    assert feeds_with_articles >= 30 and articles == summary.new_articles > 100
    print(f"\n{len(files)} feeds: {feeds_with_articles} gave articles ({articles}), {len(errored)} recorded errors")
