"""Polling with extraction in worker processes gives what polling then extracting in-process gives."""

import asyncio
import html
from datetime import UTC, datetime, timedelta

import pytest

from extract.fetch import FetchPolicy
from flows.polling import extract_articles, extraction_pool, extraction_workers, poll
from tests.http_server import make_server_fixture, static
from warehouse.feeds import FeedRecord

http_server = make_server_fixture()

PAGES = 24
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def article_page(index: int) -> bytes:
    paragraphs = "".join(
        f"<p>{html.escape(sentence)}</p>"
        for sentence in (
            f"The council of town {index} voted on Tuesday to rebuild the old bridge over the river.",
            f"Mayor Alice Number{index} said work would start in spring and cost {index * 3} million euros.",
            "Residents had asked for the repair since floods damaged the bridge two winters ago.",
        )
    )
    return (
        f"<!doctype html><html lang='en'><head><title>Town {index} rebuilds its bridge</title></head><body>"
        f"<nav><a href='/'>Home</a></nav><article><h1>Town {index} rebuilds its bridge</h1>{paragraphs}</article>"
        "<footer>Copyright 2026 Example</footer></body></html>"
    ).encode()


def feed(base: str, indices: range) -> bytes:
    items = "".join(
        f"<item><title>Town {i}</title><link>{base}/a/{i}</link><pubDate>Wed, 29 Nov 2023 10:{i:02d}:00 GMT</pubDate>"
        f"<description>Summary {i}: the town votes on its bridge.</description></item>"
        for i in indices
    )
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>{items}</channel></rss>".encode()


@pytest.fixture
def feeds(http_server) -> list[FeedRecord]:
    halves = (range(0, PAGES // 2), range(PAGES // 2, PAGES))
    records = []
    for number, indices in enumerate(halves):
        http_server.route(f"/feed{number}.xml", static(feed(http_server.base_url, indices), "application/rss+xml"))
        records.append(FeedRecord(
            f"f{number}", http_server.url(f"/feed{number}.xml"), None, NOW, None, None, None, None, None, None, 0, None, None,
        ))
    for index in range(PAGES):
        if index == 5:
            http_server.route(f"/a/{index}", static(b"gone", "text/plain", status=404))
        elif index == 7:
            http_server.route(f"/a/{index}", static(b"%PDF-1.4 binary", "application/pdf"))
        else:
            http_server.route(f"/a/{index}", static(article_page(index)))
    return records


def run_poll(feeds, extractor=None, **kwargs):
    policy = FetchPolicy(allow_private_networks=True, per_host_delay=0.0, per_host_concurrency=8, respect_robots=False)
    return asyncio.run(poll(feeds, policy, timedelta(minutes=15), lambda urls: set(), extractor=extractor, **kwargs))


def comparable(articles):
    """Everything an extracted article carries, in a form two runs can be compared by."""
    return sorted(
        (item.article.url, item.article, item.feed_id, item.text_source, item.final_url, item.content_type, item.html_zlib is not None)
        for item in articles
    )


def test_pages_extracted_in_worker_processes_match_in_process_extraction(feeds):
    plain = run_poll(feeds)
    assert plain.articles is None and len(plain.pages) == PAGES
    expected, extraction_failures = extract_articles(plain.pages)
    assert extraction_failures == []

    with extraction_pool(2) as extractor:
        pooled = run_poll(feeds, extractor)
    assert pooled.pages == [] and pooled.articles is not None
    assert comparable(pooled.articles) == comparable(expected)
    assert len(pooled.articles) == PAGES
    # The page that failed and the one that is not HTML keep the feed's summary; failures are the same rows.
    sources = {item.article.url.rsplit("/", 1)[-1]: item.text_source for item in pooled.articles}
    assert sources["5"] == sources["7"] == "feed-summary" and sources["6"] == "page"
    assert [(f.url, f.error) for f in pooled.failures] == [(f.url, f.error) for f in plain.failures]
    assert [f.url.rsplit("/", 1)[-1] for f in pooled.failures] == ["5", "7"]


def test_small_runs_extract_in_process(feeds):
    with extraction_pool(2) as extractor:
        polled = run_poll(feeds, extractor, min_pool_pages=PAGES + 1)
    assert polled.articles is None and len(polled.pages) == PAGES


def test_one_worker_means_no_pool():
    with extraction_pool(1) as extractor:
        assert extractor is None
    assert extraction_workers(3) == 3 and extraction_workers(0) >= 1


def test_an_entry_that_gives_date_and_title_spares_the_page_those_searches(monkeypatch):
    from extract.content import Article
    from extract.feeds import FeedEntry
    from extract.fetch import FetchResult
    from flows import polling

    calls = []

    def extractor(body, url, **kwargs):
        calls.append(kwargs)
        return Article(url, None, "The council met on Tuesday.", None)

    monkeypatch.setattr(polling, "article_from_html", extractor)
    page = FetchResult("https://example.com/a", "https://example.com/a", 200, b"<html></html>", "text/html")
    when = datetime(2026, 11, 1, tzinfo=UTC)
    entries = [
        FeedEntry("https://example.com/a", "Council meets", when, "Ann Other", None, None),
        FeedEntry("https://example.com/a", "Council meets", when, None, None, None),
        FeedEntry("https://example.com/a", "Council meets", None, "Ann Other", None, None),
    ]
    articles = [polling._fetched_article(entry, "f1", page).article for entry in entries]
    assert [(c["entry_title"], c["entry_author"]) for c in calls] == [
        ("Council meets", "Ann Other"), ("Council meets", None), (None, None)
    ]
    # The entry's metadata fills what the page did not give; the feed's date wins.
    assert [(a.title, a.author, a.published_at) for a in articles] == [
        ("Council meets", "Ann Other", when), ("Council meets", None, when), ("Council meets", "Ann Other", None)
    ]
