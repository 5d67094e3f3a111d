"""Feed runs end to end against a real local HTTP server, with the real model."""

import html
from pathlib import Path
from datetime import UTC, datetime

import pytest

from flows.embedding import embedding_model_key
from flows.ingest import ingest_feeds
from flows.settings import Settings
from tests.seed_site import ORIGINAL, OTHER, REWRITE, SEEDS, page, serve_seed_site
from tests.http_server import make_server_fixture, static
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
http_server = make_server_fixture()


def test_feed_run_then_unchanged_run(tmp_path, http_server, query):
    serve_seed_site(http_server)
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0, poll_interval_minutes=0.0001)
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/feed.xml"), "Local", datetime.now(UTC))
        add_feed(connection, http_server.url("/broken.xml"), None, datetime.now(UTC))

    first = ingest_feeds(db, settings)
    assert (first.feeds_polled, first.new_articles, first.duplicates) == (2, 4, 1)
    stored = query(db, "SELECT url, duplicate_of, text_source, story_id FROM articles")
    assert not any("utm_source" in url for url, *_ in stored)
    rows = {url.rsplit("/", 1)[1].split("?")[0]: (dup, source, story) for url, dup, source, story in stored}
    assert set(rows) == {ORIGINAL, REWRITE, OTHER, "gone"}
    assert rows[REWRITE][0] is not None and rows[OTHER][0] is None, rows
    assert rows["gone"][1] == "feed-summary" and rows[ORIGINAL][1] == "page"
    assert rows[ORIGINAL][2] == rows[REWRITE][2] == rows[OTHER][2]
    assert query(db, "SELECT count(*) FROM pages")[0][0] == 3
    failures = query(db, "SELECT url, status FROM fetch_failures ORDER BY url")
    assert (http_server.url("/a/gone"), 404) in failures and (http_server.url("/broken.xml"), 500) in failures
    health = dict((url.rsplit("/", 1)[1], rest) for url, *rest in query(
        db, "SELECT url, last_status, consecutive_failures, etag, next_due_at > now() FROM feeds"))
    assert health["feed.xml"][:3] == [200, 0, '"v1"']
    assert health["broken.xml"][:2] == [500, 1] and health["broken.xml"][3] is True  # backing off

    seen = len(http_server.paths_seen())
    second = ingest_feeds(db, settings)
    assert (second.feeds_polled, second.not_modified, second.new_articles) == (1, 1, 0)
    later = http_server.paths_seen()[seen:]
    assert later == ["/feed.xml"], later  # no page, no broken feed (backing off), feed answered 304
    assert query(db, "SELECT count(*) FROM articles")[0][0] == 4


def test_run_killed_before_loading_loses_nothing(tmp_path, http_server, monkeypatch, query):
    serve_seed_site(http_server)
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0, poll_interval_minutes=0.0001)
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/feed.xml"), "Local", datetime.now(UTC))

    from flows import pipeline

    real_load = pipeline.load

    def killed(batch, db, settings):
        raise KeyboardInterrupt  # the process dies between fetching and loading

    monkeypatch.setattr(pipeline, "load", killed)
    with pytest.raises(BaseException):
        ingest_feeds(db, settings)
    assert query(db, "SELECT count(*) FROM articles")[0][0] == 0
    assert query(db, "SELECT flow, status FROM runs") == [("ingest-feeds", "cancelled")]
    assert query(db, "SELECT etag, last_status FROM feeds") == [(None, None)]  # validators not kept

    monkeypatch.setattr(pipeline, "load", real_load)
    summary = ingest_feeds(db, settings)
    assert (summary.not_modified, summary.new_articles, summary.duplicates) == (0, 4, 1)
    again = ingest_feeds(db, settings)
    assert (again.not_modified, again.new_articles) == (1, 0)
    assert query(db, "SELECT count(*), count(DISTINCT url) FROM articles")[0] == (4, 4)


def test_feed_faults_are_rows_and_the_run_goes_on(tmp_path, http_server, query):
    serve_seed_site(http_server)
    laughs = (Path(__file__).parent / "fixtures" / "feeds" / "billion_laughs.xml").read_bytes()
    http_server.route("/limited.xml", static(b"slow down", "text/plain", status=429, headers={"Retry-After": "600"}))
    http_server.route("/laughs.xml", static(laughs, "application/rss+xml"))
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0, poll_interval_minutes=0.0001)
    now = datetime.now(UTC)
    with open_warehouse(db) as connection:
        for path in ("/feed.xml", "/limited.xml", "/laughs.xml"):
            add_feed(connection, http_server.url(path), None, now)

    summary = ingest_feeds(db, settings)
    assert (summary.feeds_polled, summary.new_articles) == (3, 4)
    health = {url.rsplit("/", 1)[1]: rest for url, *rest in query(
        db, "SELECT url, last_status, consecutive_failures, last_error, epoch(next_due_at - now()) FROM feeds")}
    status, failures, error, due_in = health["limited.xml"]
    assert (status, failures) == (429, 1) and 590 < due_in <= 600  # Retry-After honoured
    status, failures, error, due_in = health["laughs.xml"]
    assert failures == 1 and "entit" in error.lower() and due_in > 0
    assert health["feed.xml"][:2] == [200, 0]
    rows = {url.rsplit("/", 1)[1]: (status, error) for url, status, error in query(
        db, "SELECT url, status, error FROM fetch_failures")}
    assert rows["limited.xml"][0] == 429 and "entit" in rows["laughs.xml"][1].lower()


def test_rel_canonical_makes_a_second_url_the_same_article(tmp_path, http_server, query):
    original = page(ORIGINAL).replace(
        b"<head>", f"<head><link rel='canonical' href='{http_server.url('/story/musk-gaza')}'>".encode())
    http_server.route("/a/1", static(original))
    http_server.route("/amp/1", static(original))
    http_server.route("/story/musk-gaza", static(original))

    def feed(*paths):
        items = "".join(
            f"<item><title>Musk</title><link>{http_server.url(p)}</link>"
            f"<pubDate>Wed, 29 Nov 2023 1{i}:00:00 GMT</pubDate></item>" for i, p in enumerate(paths))
        return f"<rss version='2.0'><channel><title>x</title>{items}</channel></rss>".encode()

    http_server.route("/one.xml", static(feed("/a/1", "/amp/1"), "application/rss+xml"))
    http_server.route("/two.xml", static(feed("/story/musk-gaza"), "application/rss+xml"))
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0)
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/one.xml"), None, datetime.now(UTC))

    ingest_feeds(db, settings)
    rows = query(db, "SELECT url, canonical_url, duplicate_kind FROM articles ORDER BY url")
    assert [(url.rsplit("/", 2)[-2], canonical, kind) for url, canonical, kind in rows] == [
        ("a", http_server.url("/story/musk-gaza"), None), ("amp", http_server.url("/story/musk-gaza"), "url")]
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/two.xml"), None, datetime.now(UTC))
    ingest_feeds(db, settings)
    assert "/story/musk-gaza" not in http_server.paths_seen()  # already stored under its canonical URL
    assert query(db, "SELECT count(*) FROM articles")[0][0] == 2


def test_feed_text_only_and_a_feed_list_file(tmp_path, http_server, query):
    body = " ".join((SEEDS / OTHER).read_text(encoding="utf-8").split()[3:])
    full = (
        "<rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/'><channel><title>Full</title>"
        f"<item><title>Musk declines</title><link>{http_server.url('/a/full')}</link>"
        "<pubDate>Wed, 29 Nov 2023 10:00:00 GMT</pubDate><description>Short teaser.</description>"
        f"<content:encoded>{html.escape('<p>' + html.escape(body) + '</p>')}</content:encoded></item>"
        "</channel></rss>"
    ).encode()
    http_server.route("/full.xml", static(full, "application/rss+xml"))
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        "<opml version='2.0'><head><title>f</title></head><body>"
        f"<outline type='rss' text='Full' xmlUrl='{http_server.url('/full.xml')}'/></body></opml>"
    )
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0, fetch_pages=False, feeds_file=opml)

    summary = ingest_feeds(db, settings)
    assert summary.new_articles == 1
    assert http_server.paths_seen() == ["/full.xml"]  # no page fetched
    [(source, text, language)] = query(db, "SELECT text_source, text, language FROM articles")
    assert source == "feed-summary" and "Short teaser" not in text and len(text) > 1000 and language == "en"
    assert query(db, "SELECT name FROM feeds") == [("Full",)]


def test_reextract_rebuilds_texts_from_stored_pages(tmp_path, http_server, query):
    from flows.maintenance import reextract_pages
    from warehouse.vector_index import index_folder

    serve_seed_site(http_server)
    db = tmp_path / "nw.duckdb"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0)
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/feed.xml"), "Local", datetime.now(UTC))
    ingest_feeds(db, settings)
    before = query(db, "SELECT article_id, text, text_hash, extracted_with FROM articles WHERE text_source = 'page' ORDER BY 1")
    terms_before = query(db, "SELECT term, document_count FROM terms ORDER BY term")
    assert all(row[3].startswith("trafilatura ") for row in before)

    # As if an older extractor had produced a worse text for one article.
    damaged = before[0][0]
    with open_warehouse(db) as connection:
        connection.execute("UPDATE articles SET text = 'stale', text_hash = 'stale', extracted_with = 'trafilatura 0.1'"
                           " WHERE article_id = ?", [damaged])
    seen = len(http_server.paths_seen())
    assert index_folder(db).exists()
    summary = reextract_pages(db, settings)
    assert (summary.pages, summary.changed, summary.failed) == (1, 1, 0)
    assert not index_folder(db).exists()  # changed texts: the vector index is rebuilt when next needed
    assert http_server.paths_seen()[seen:] == []  # nothing refetched
    assert query(db, "SELECT article_id, text, text_hash, extracted_with FROM articles WHERE text_source = 'page' ORDER BY 1") == before
    assert query(db, "SELECT term, document_count FROM terms ORDER BY term") == terms_before

    everything = reextract_pages(db, settings, everything=True)
    assert (everything.pages, everything.changed, everything.unchanged, everything.new_embeddings) == (3, 0, 3, 0)
    assert query(db, "SELECT term, document_count FROM terms ORDER BY term") == terms_before


def test_runs_are_recorded_and_maintenance_exports_each_article_once(tmp_path, http_server, query):
    import pyarrow.parquet as pq

    from flows.maintenance import maintenance

    serve_seed_site(http_server)
    db = tmp_path / "nw.duckdb"
    exports = tmp_path / "exports"
    settings = Settings(allow_private_networks=True, fetch_host_delay=0, export_dir=exports)
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/feed.xml"), "Local", datetime.now(UTC))
        add_feed(connection, http_server.url("/broken.xml"), None, datetime.now(UTC))
    summary = ingest_feeds(db, settings)
    [(run_id, flow, status, polled, new, duplicates, errors, finished)] = query(
        db, "SELECT run_id, flow, status, feeds_polled, new_articles, duplicates, errors, finished_at > started_at FROM runs")
    assert (run_id, flow, status) == (summary.run_id, "ingest-feeds", "completed")
    assert (polled, new, duplicates, errors, finished) == (2, 4, 1, 2, True)  # errors: the 500 feed and the 404 page

    first = maintenance(db, settings)
    [export] = list(exports.glob("articles-*.parquet"))
    table = pq.read_table(export)
    assert table.num_rows == 4 and "story_id" in table.column_names
    assert "exported 4 articles" in first.message and "1 of 2 feeds need attention" in first.message
    second = maintenance(db, settings)
    assert "exported 0 articles" in second.message and len(list(exports.glob("*.parquet"))) == 1
    assert [row[0] for row in query(db, "SELECT status FROM runs WHERE flow = 'maintenance'")] == ["completed"] * 2


def test_extraction_workers_and_embedding_ahead_store_what_a_plain_run_stores(tmp_path, http_server, query):
    """A run big enough for worker processes (and embedding while fetching) equals an in-process one."""
    texts = [(SEEDS / name).read_text(encoding="utf-8").split(" ", 3)[-1] for name in (ORIGINAL, REWRITE, OTHER)]
    items = []
    for index in range(18):
        body = texts[index % 3] + f"\nThe bureau filed report {index} on {index + 1} December."
        paragraphs = "".join(f"<p>{html.escape(p.strip())}</p>" for p in body.split("\n") if p.strip())
        http_server.route(f"/many/{index}", static(
            f"<!doctype html><html lang='en'><head><title>Report {index}</title></head><body><article>{paragraphs}"
            "</article></body></html>".encode()
        ))
        items.append(
            f"<item><title>Report {index}</title><link>{http_server.base_url}/many/{index}</link>"
            f"<pubDate>Wed, 29 Nov 2023 10:{index:02d}:00 GMT</pubDate></item>"
        )
    http_server.route("/many.xml", static(
        f"<?xml version='1.0'?><rss version='2.0'><channel><title>Many</title>{''.join(items)}</channel></rss>".encode(),
        "application/rss+xml",
    ))
    stored = {}
    for workers in (1, 2):
        db = tmp_path / f"w{workers}.duckdb"
        with open_warehouse(db) as connection:
            add_feed(connection, http_server.url("/many.xml"), "Many", datetime.now(UTC))
        summary = ingest_feeds(db, Settings(allow_private_networks=True, fetch_host_delay=0, extract_workers=workers))
        assert summary.new_articles == 18
        stored[workers] = (
            query(db, "SELECT url, title, text, text_hash, published_at, text_source, duplicate_kind FROM articles ORDER BY url"),
            query(db, "SELECT a.url, d.url FROM articles a LEFT JOIN articles d ON a.duplicate_of = d.article_id ORDER BY 1"),
            query(db, "SELECT list(url ORDER BY url) FROM articles GROUP BY story_id ORDER BY 1"),
            # Everyday vectors of the leads and the whole-article ones the verdicts needed.
            query(db, "SELECT text_hash, model, chunk_count, vector FROM embeddings ORDER BY text_hash, model"),
        )
    (rows1, dups1, stories1, vectors1), (rows2, dups2, stories2, vectors2) = stored[1], stored[2]
    assert rows1 == rows2 and dups1 == dups2 and stories1 == stories2
    assert [row[:3] for row in vectors1] == [row[:3] for row in vectors2]
    assert sum(model == embedding_model_key(Settings()) for _, model, _, _ in vectors1) == 18
    for (*_, first), (*_, second) in zip(vectors1, vectors2):
        assert sum(a * b for a, b in zip(first, second)) > 0.9999
