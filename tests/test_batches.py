"""Bounded batches: a run stores its articles a batch at a time, and a stopped run resumes."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from extract.fetch import FetchPolicy
from flows import pipeline, polling
from flows.batches import ArticleStream
from flows.ingest import ingest_feeds
from flows.polling import FetchedArticle, newest, poll
from flows.settings import Settings
from extract.content import Article
from extract.feeds import FeedEntry
from tests.seed_site import ORIGINAL, OTHER, REWRITE, serve_seed_site
from tests.http_server import make_server_fixture, respond, static
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, FeedRecord, FetchFailure, add_feed

http_server = make_server_fixture()
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def outcome(feed_id: str) -> FeedOutcome:
    return FeedOutcome(feed_id, NOW, 200, None, '"etag"', None, NOW + timedelta(minutes=15), 1)


def fetched(url: str, feed_id: str = "f1") -> FetchedArticle:
    return FetchedArticle(Article(url, "t", "text", None), feed_id, "page")


def test_a_feed_is_saved_with_the_batch_that_stores_its_last_entry():
    stream = ArticleStream()
    stream.feeds_parsed(
        [outcome("f1"), outcome("f2"), outcome("f3")],
        [FetchFailure("https://f3/feed", "f3", 500, "boom", NOW)],
        {"f1": ["a", "b", "c"], "f2": ["d"], "f3": []},
    )
    for url in ("a", "b"):
        stream.entry_done("f1", url, fetched(url), None)
    stream.entry_done("f2", "d", None, FetchFailure("d", "f2", 404, "gone", NOW))  # no article: not waited for
    assert [a.article.url for a in stream.next_batch(2)] == ["a", "b"]
    outcomes, failures = stream.completed_feeds(["a", "b"])
    assert {o.feed_id for o in outcomes} == {"f2", "f3"}  # f1 still waits for c
    assert {f.url for f in failures} == {"https://f3/feed", "d"}
    stream.entry_done("f1", "c", fetched("c"), None)
    stream.close()
    assert [a.article.url for a in stream.next_batch(2)] == ["c"] and stream.next_batch(2) is None
    outcomes, failures = stream.completed_feeds(["c"])
    assert [o.feed_id for o in outcomes] == ["f1"] and failures == []
    assert stream.completed_feeds([]) == ([], [])  # each handed out once


def test_closing_releases_entries_that_never_came():
    stream = ArticleStream()
    stream.feeds_parsed([outcome("f1")], [], {"f1": ["a", "b"]})
    stream.entry_done("f1", "a", fetched("a"), None)
    stream.close()  # b's page was never fetched (the run is stopping)
    batch = stream.next_batch(10)
    assert [o.feed_id for o in stream.completed_feeds([a.article.url for a in batch])[0]] == ["f1"]


def test_newest_entries_first_then_undated_in_feed_order():
    entries = [
        FeedEntry(url=f"u{i}", title=None, published_at=when, author=None, summary=None, guid=None)
        for i, when in enumerate([NOW, None, NOW + timedelta(days=2), NOW - timedelta(days=1), None])
    ]
    assert [e.url for e in newest(entries, 4)] == ["u2", "u0", "u3", "u1"]


# --- a page the extractor fails on ---


def test_a_page_whose_extraction_raises_keeps_the_entry_and_leaves_a_failure_row(http_server, monkeypatch):
    real = polling.article_from_html

    def fragile(body, url, *args, **kwargs):
        if url.endswith("/a/3"):
            raise ValueError("lxml choked")
        return real(body, url, *args, **kwargs)

    monkeypatch.setattr(polling, "article_from_html", fragile)
    items = "".join(
        f"<item><title>Entry {i}</title><link>{http_server.base_url}/a/{i}</link><description>Summary {i}.</description></item>"
        for i in range(20)
    )
    http_server.route("/feed.xml", static(f"<rss version='2.0'><channel>{items}</channel></rss>".encode(), "application/rss+xml"))
    for i in range(20):
        http_server.route(f"/a/{i}", static(
            f"<html><body><article><p>Article {i} says the council met on Tuesday about the bridge.</p>"
            f"<p>It will cost {i} million euros, said mayor Number{i}.</p></article></body></html>".encode()
        ))
    feeds = [FeedRecord("f1", http_server.url("/feed.xml"), None, NOW, None, None, None, None, None, None, 0, None, None)]
    policy = FetchPolicy(allow_private_networks=True, per_host_delay=0.0, per_host_concurrency=8, respect_robots=False)
    # In worker threads, so the failing extractor is the one used (it is the same code as in worker processes).
    with ThreadPoolExecutor(2) as extractor:
        streamed = asyncio.run(poll(feeds, policy, timedelta(minutes=15), lambda urls: set(), extractor=extractor))
    in_process = asyncio.run(poll(feeds, policy, timedelta(minutes=15), lambda urls: set(), min_pool_pages=100))
    articles, failures = polling.extract_articles(in_process.pages)
    for found, failed in ((streamed.articles, streamed.failures), (articles, failures)):
        by_url = {item.article.url.rsplit("/", 1)[-1]: item for item in found}
        assert len(by_url) == 20 and by_url["3"].text_source == "feed-summary" and by_url["3"].article.text == "Summary 3."
        assert by_url["4"].text_source == "page"
        assert [(f.url.rsplit("/", 1)[-1], f.error) for f in failed] == [("3", "extraction failed: ValueError: lxml choked")]


# --- through the flow ---


def settings_for(db, **overrides) -> Settings:
    return Settings(
        db=db, allow_private_networks=True, fetch_host_delay=0.0, respect_robots=False, extract_workers=1, **overrides
    )


def test_batches_of_one_decide_against_what_earlier_batches_stored(tmp_path, http_server, prefect_server, query):
    serve_seed_site(http_server)
    db = tmp_path / "one.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/feed.xml"), "Local", NOW)
    summary = ingest_feeds(db, settings_for(db, batch_size=1))
    assert (summary.new_articles, summary.duplicates, summary.new_stories) == (4, 1, 1)
    rows = query(db, "SELECT title, duplicate_kind, story_id, ingested_at FROM articles ORDER BY published_at")
    assert len({ingested for *_, ingested in rows}) == 4  # four batches, four transactions
    seeds = rows[:3]
    assert [kind for _, kind, _, _ in seeds] == [None, "rewrite", None]  # the rewrite found in the stored original
    assert len({story for _, _, story, _ in seeds}) == 1  # and the other article joins the stored story
    assert query(db, "SELECT etag, consecutive_failures FROM feeds") == [('"v1"', 0)]


def entries_feed(base: str, count: int) -> bytes:
    items = "".join(
        f"<item><title>Report {i}</title><link>{base}/r/{i}</link>"
        f"<pubDate>{(NOW + timedelta(minutes=i)).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
        f"<description>Report {i}: the club Rovers{i} beat United{i} by {i} goals to {i % 3} in town {i}.</description></item>"
        for i in range(count)
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>Big</title>{items}</channel></rss>".encode()


def serve_big_feed(http_server, count: int) -> None:
    feed = entries_feed(http_server.base_url, count)

    def handler(request):
        if request.headers.get("If-None-Match") == '"big"':
            respond(request, 304, b"", None, {"ETag": '"big"'})
        else:
            respond(request, 200, feed, "application/rss+xml", {"ETag": '"big"'})

    http_server.route("/big.xml", handler)


def test_a_huge_feed_gives_its_newest_entries_first_and_the_rest_in_the_next_runs(tmp_path, http_server, prefect_server, query):
    serve_big_feed(http_server, 25)
    db = tmp_path / "cap.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/big.xml"), "Big", NOW)
    settings = settings_for(db, fetch_pages=False, feed_max_new_entries=10, batch_size=4)
    stored = []
    for expected in (10, 10, 5, 0):
        summary = ingest_feeds(db, settings)
        assert summary.new_articles == expected
        titles = {title for (title,) in query(db, "SELECT title FROM articles")}
        stored.append(titles)
        etag, next_due = query(db, "SELECT etag, next_due_at FROM feeds")[0]
        if len(titles) < 25:  # a backlog: validators not kept, due again at once
            assert etag is None and next_due <= datetime.now(UTC)
        else:
            assert etag == '"big"'
    assert stored[0] == {f"Report {i}" for i in range(15, 25)}  # newest first
    assert stored[1] - stored[0] == {f"Report {i}" for i in range(5, 15)}
    assert len(stored[2]) == 25 and stored[3] == stored[2]


def test_a_run_that_fails_midway_keeps_its_batches_and_the_next_run_completes_it(
    tmp_path, http_server, prefect_server, monkeypatch, query
):
    serve_big_feed(http_server, 12)
    db = tmp_path / "resume.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/big.xml"), "Big", NOW)
    settings = settings_for(db, fetch_pages=False, batch_size=5)
    real_load, loads = pipeline.load, []

    def load_then_die(batch, target, settings):
        if len(loads) == 2:
            raise RuntimeError("killed during the third batch")
        loads.append(batch)
        return real_load(batch, target, settings)

    monkeypatch.setattr(pipeline, "load", load_then_die)
    with pytest.raises(RuntimeError):
        ingest_feeds(db, settings)
    assert query(db, "SELECT count(*) FROM articles") == [(10,)]  # two whole batches
    # The feed is not complete: its validators and health were not saved, so the next run reads it again.
    assert query(db, "SELECT etag, last_status FROM feeds") == [(None, None)]
    monkeypatch.setattr(pipeline, "load", real_load)
    summary = ingest_feeds(db, settings)
    assert (summary.already_stored, summary.new_articles) == (0, 2)  # stored URLs are not even fetched again
    assert query(db, "SELECT count(*), count(DISTINCT url) FROM articles") == [(12, 12)]
    assert query(db, "SELECT etag, last_status, consecutive_failures FROM feeds") == [('"big"', 200, 0)]
    assert [s for (s,) in query(db, "SELECT status FROM runs ORDER BY started_at")] == ["failed", "completed"]


def test_pages_extracted_in_workers_are_stored_batch_by_batch_while_others_are_fetched(tmp_path, http_server, prefect_server, query):
    count = 20
    items = "".join(
        f"<item><title>Bridge {i}</title><link>{http_server.base_url}/p/{i}</link><description>Summary {i}.</description></item>"
        for i in range(count)
    )
    http_server.route("/pages.xml", static(f"<rss version='2.0'><channel>{items}</channel></rss>".encode(), "application/rss+xml"))
    for i in range(count):
        http_server.route(f"/p/{i}", static(
            f"<html lang='en'><body><article><h1>Town{i} rebuilds its bridge</h1>"
            f"<p>The council of Town{i} voted on Tuesday to rebuild the bridge over the river Flow{i}.</p>"
            f"<p>Mayor Alice Number{i} said the work would cost {i * 3 + 1} million euros.</p></article></body></html>".encode()
        ))
    db = tmp_path / "pages.duckdb"
    with open_warehouse(db) as connection:
        add_feed(connection, http_server.url("/pages.xml"), "Pages", NOW)
    summary = ingest_feeds(db, settings_for(db, batch_size=6).model_copy(update={"extract_workers": 2}))
    assert summary.new_articles == count and summary.failures == 0
    assert query(db, "SELECT count(DISTINCT ingested_at), count(*) FILTER (WHERE text_source = 'page') FROM articles") == [(4, count)]
    assert query(db, "SELECT last_status, last_error FROM feeds") == [(200, None)]


def test_fixture_files_are_read_and_stored_a_batch_at_a_time(tmp_path, seeds_copy, prefect_server, monkeypatch, query):
    from flows import ingest

    folder = seeds_copy(ORIGINAL, REWRITE, OTHER)
    (folder / "notes.md").write_text("not an article")
    read = []
    real = ingest.read_fixture_files
    monkeypatch.setattr(ingest, "read_fixture_files", lambda paths, *a, **k: read.append(len(paths)) or real(paths, *a, **k))
    db = tmp_path / "files.duckdb"
    summary = ingest.ingest_fixtures(folder, db, Settings(db=db, batch_size=2))
    assert read == [2, 2]  # never more files in memory than one batch
    assert (summary.read, len(summary.skipped), summary.new_articles, summary.duplicates, summary.new_stories) == (3, 1, 3, 1, 1)
    assert query(db, "SELECT count(DISTINCT ingested_at), count(DISTINCT story_id) FROM articles") == [(2, 1)]


def test_fetching_waits_while_the_stream_is_full(http_server):
    items = "".join(f"<item><title>E{i}</title><link>{http_server.base_url}/e/{i}</link></item>" for i in range(20))
    http_server.route("/f.xml", static(f"<rss version='2.0'><channel>{items}</channel></rss>".encode(), "application/rss+xml"))
    for i in range(20):
        http_server.route(f"/e/{i}", static(
            f"<html><body><article><p>Entry {i}: the council of Town{i} met on Tuesday about the bridge.</p>"
            f"<p>It will cost {i} million euros, said mayor Number{i}.</p></article></body></html>".encode()
        ))
    feeds = [FeedRecord("f1", http_server.url("/f.xml"), None, NOW, None, None, None, None, None, None, 0, None, None)]
    policy = FetchPolicy(allow_private_networks=True, per_host_delay=0.0, per_host_concurrency=8, respect_robots=False)
    stream, most = ArticleStream(capacity=4), []
    real = stream.entry_done

    def counting(*args):
        real(*args)
        most.append(len(stream._ready))

    stream.entry_done = counting

    def consume():
        time.sleep(2)  # a slow first batch: fetching must wait meanwhile
        taken = []
        while (batch := stream.next_batch(3)) is not None:
            taken += batch
        return taken

    with ThreadPoolExecutor(2) as extractor, ThreadPoolExecutor(1) as consumer:
        taken = consumer.submit(consume)
        polled = asyncio.run(poll(feeds, policy, timedelta(minutes=15), lambda urls: set(), extractor=extractor, listener=stream))
        stream.close()
        assert len(taken.result(30)) == 20
    assert max(most) <= 4 and polled.failures == []
