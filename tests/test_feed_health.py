"""Feed health end to end: a feed that is broken XML and yields nothing is a recorded failure."""

from datetime import UTC, datetime

import duckdb

from flows.ingest import ingest_feeds
from flows.settings import Settings
from tests.http_server import make_server_fixture, static
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed

http_server = make_server_fixture()

# Cut off mid-item, as a server that dies while sending leaves it: feedparser flags it and finds no entry.
TRUNCATED = (b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>\n'
             b"<title>Cut short</title><link>https://cut.example.org/</link>\n<item><title>Half an it")
# Ill-formed too (an HTML entity XML does not know), but its entry is recovered: it stays healthy.
RECOVERABLE = (b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Loose</title>\n'
               b"<item><title>Caf&eacute; opens</title><link>https://loose.example.org/a</link>"
               b"<description>A new caf&eacute; opens on the square.</description></item></channel></rss>")
EMPTY = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'


def test_malformed_feed_that_yields_nothing_is_a_recorded_failure(tmp_path, http_server, monkeypatch, prefect_server):
    monkeypatch.setenv("NEWSWATCH_ALLOW_PRIVATE_NETWORKS", "1")
    for path, body in (("/truncated.xml", TRUNCATED), ("/recoverable.xml", RECOVERABLE), ("/empty.xml", EMPTY)):
        http_server.route(path, static(body, "application/rss+xml"))
    db = tmp_path / "nw.duckdb"
    with open_warehouse(db) as connection:
        for path in ("/truncated.xml", "/recoverable.xml", "/empty.xml"):
            add_feed(connection, http_server.url(path), None, datetime.now(UTC))
    # Feed text only: the recovered entry links to a host a test must never contact.
    settings = Settings(fetch_pages=False, fetch_host_delay=0)
    assert settings.allow_private_networks

    summary = ingest_feeds(db, settings)

    connection = duckdb.connect(str(db), read_only=True)
    try:
        health = {url.rsplit("/", 1)[1]: rest for url, *rest in connection.execute(
            "SELECT url, last_status, last_error, consecutive_failures, next_due_at > now() FROM feeds").fetchall()}
        failures = connection.execute("SELECT url, error FROM fetch_failures").fetchall()
        articles = connection.execute("SELECT url FROM articles").fetchall()
    finally:
        connection.close()
    assert summary.feeds_polled == 3
    status, error, consecutive, backed_off = health["truncated.xml"]
    assert status == 200 and consecutive == 1 and backed_off
    assert error.startswith("not a feed: XML syntax error at line 4")
    assert failures == [(http_server.url("/truncated.xml"), error)]
    assert health["recoverable.xml"][1:3] == [None, 0] and articles == [("https://loose.example.org/a",)]
    assert health["empty.xml"][1:3] == [None, 0]
