"""Polling feeds and fetching their new articles' pages: the network half of a feed run.

Everything here is plain async code over `extract.fetch` and `extract.feeds`; failures become
rows (per feed and per article), never exceptions, so one bad feed cannot stop a run.
"""

import asyncio
import logging
import multiprocessing
import os
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from extract.content import Article, article_from_html, detect_language, normalize_text
from extract.feeds import FeedEntry, FeedError, parse_feed
from extract.fetch import Fetcher, FetchPolicy, FetchResult, next_retry_delay
from flows.processes import set_parent_death_signal
from flows.settings import Settings
from warehouse.feeds import FeedOutcome, FeedRecord, FetchFailure

logger = logging.getLogger(__name__)

FEED_TYPES = (
    "application/rss+xml", "application/atom+xml", "application/xml", "text/xml", "application/rdf+xml",
    "application/feed+json", "application/json", "text/plain", "application/octet-stream", "text/html",
)
PAGE_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class FetchedArticle:
    """An article built from a feed entry and (when it could be fetched) its page."""

    article: Article
    feed_id: str
    text_source: str  # "page" or "feed-summary"
    html_zlib: bytes | None = None
    final_url: str | None = None
    content_type: str | None = None


@dataclass
class FetchedPage:
    """A new feed entry with the response for its page (None when pages are not fetched)."""

    entry: FeedEntry
    feed_id: str
    page: FetchResult | None


@dataclass
class PollResult:
    """What polling the due feeds gave: new entries with their pages, and their articles when extracted."""

    pages: list[FetchedPage] = field(default_factory=list)
    articles: list[FetchedArticle] | None = None  # set when pages were extracted while fetching
    outcomes: list[FeedOutcome] = field(default_factory=list)
    failures: list[FetchFailure] = field(default_factory=list)
    entries_of: dict[str, list[str]] = field(default_factory=dict)  # feed_id → URLs of the entries taken
    feeds_polled: int = 0
    not_modified: int = 0


class PollListener(Protocol):
    """Told what polling finds while it goes, so a run can store articles before polling ends."""

    stopped: bool  # set to skip the pages not fetched yet (the run is stopping)
    # At most this many articles handed over and not yet taken (None: no limit): fetching waits
    # for room, so a slow consumer keeps memory bounded. Polling sets `on_taken`, which the
    # listener calls with the number of articles it hands on.
    capacity: int | None
    on_taken: "Callable[[int], None] | None"

    def feeds_parsed(self, outcomes: list[FeedOutcome], failures: list[FetchFailure], entries_of: dict[str, list[str]]) -> None:
        """Every feed was fetched and parsed: its outcome, its failure rows, the entries it brings."""

    def entry_done(self, feed_id: str, url: str, article: "FetchedArticle | None", failure: "FetchFailure | None") -> None:
        """One entry's page was fetched and extracted (its article, or none), with its failure row if any."""


async def poll(
    feeds: list[FeedRecord],
    policy: FetchPolicy,
    interval: timedelta,
    is_stored: Callable[[list[str]], set[str]],
    progress: Callable[[str, int], None] = lambda stage, count: None,
    fetch_pages: bool = True,
    extractor: Executor | None = None,
    min_pool_pages: int = 16,
    on_article: Callable[[FetchedArticle], None] | None = None,
    max_new_entries: int | None = None,
    listener: PollListener | None = None,
) -> PollResult:
    """Poll feeds, then fetch the pages of entries not stored yet.

    With an `extractor` (see `extraction_pool`) and at least `min_pool_pages` new entries, each
    page is extracted there as soon as it arrives, so extraction overlaps fetching and uses
    every core; `PollResult.articles` then holds the articles and `pages` is left empty, and
    `on_article` and the `listener` are told of each article as soon as it is extracted (e.g. to
    embed and store it while other pages are still being fetched). A page whose extraction fails
    keeps the entry's own text and leaves a failure row; it never stops the others.

    Args:
        feeds: Due feeds.
        policy: Fetching limits and manners.
        interval: Time between successful polls of one feed.
        is_stored: Which of these canonical URLs are already stored (those are never fetched).
        progress: Called with ("feeds"|"pages", items done).
        fetch_pages: Fetch each new entry's page; otherwise keep what the feed itself says.
        max_new_entries: New entries taken from one feed, newest first; a feed with more stays
            due (its validators are not kept, so its next poll reads it whole) and gives the rest
            in the next runs.
        listener: Told of the parsed feeds and of each extracted entry (with an extractor only).

    Returns:
        New entries with their pages (see `extract_articles`), per-feed outcomes and failure rows.
    """
    result = PollResult(feeds_polled=len(feeds))
    answered = take_feed_answers()
    async with Fetcher(policy) as fetcher:
        responses = await asyncio.gather(*(
            _answer_of(fetcher, feed, progress, answered) for feed in feeds
        ))
        parsed_feeds = [_parse(feed, response) for feed, response in zip(feeds, responses)]
        # One lookup for every entry of every feed: an article already stored is never fetched again.
        urls = sorted({entry.url for entries, _ in parsed_feeds for entry in entries})
        stored = is_stored(urls) if urls else set()
        entries: dict[str, tuple[FeedEntry, str]] = {}
        for feed, response, (parsed_entries, error) in zip(feeds, responses, parsed_feeds):
            now = datetime.now(UTC)
            if response.not_modified:
                result.not_modified += 1
            if error:
                result.failures.append(FetchFailure(feed.url, feed.feed_id, response.status, error, now))
                delay = next_retry_delay(feed.consecutive_failures + 1, retry_after=response.retry_after)
                next_due = now + timedelta(seconds=delay)
            else:
                next_due = now + interval
            fresh = [entry for entry in parsed_entries if entry.url not in stored and entry.url not in entries]
            etag, last_modified = response.etag, response.last_modified
            if max_new_entries is not None and len(fresh) > max_new_entries:
                logger.info("feed %s has %d new entries: taking the newest %d, the rest in the next runs",
                            feed.url, len(fresh), max_new_entries)
                fresh = newest(fresh, max_new_entries)
                # Not all of it is stored after this run: read it whole again next time, at once.
                etag = last_modified = None
                next_due = min(next_due, now)
            for entry in fresh:
                entries[entry.url] = (entry, feed.feed_id)
            result.entries_of[feed.feed_id] = [entry.url for entry in fresh]
            result.outcomes.append(FeedOutcome(
                feed.feed_id, now, response.status, error, etag, last_modified, next_due, len(fresh),
            ))
        streaming = fetch_pages and extractor is not None and len(entries) >= min_pool_pages
        if listener is not None and streaming:
            listener.feeds_parsed(list(result.outcomes), list(result.failures), dict(result.entries_of))
        if not fetch_pages:
            pages = [None] * len(entries)
        elif streaming:
            room = _room_for(listener)
            extracted = await _until_stopped(listener, [
                _fetch_and_extract(fetcher, extractor, entry, feed_id, progress, on_article, listener, room)
                for entry, feed_id in entries.values()
            ], (None, None))
            if listener is not None:
                listener.on_taken = None
            pages = [None] * len(entries)
            # Handed to the listener, the articles are not kept here too (memory stays bounded).
            result.articles = [article for article, _ in extracted if article is not None]
            page_failures = [failure for _, failure in extracted if failure is not None]
        else:
            pages = await asyncio.gather(*(
                _fetch_page(fetcher, entry, progress) for entry, _ in entries.values()
            ))
    for (entry, feed_id), page in zip(entries.values(), pages):
        if not streaming and page is not None and page.error:
            result.failures.append(FetchFailure(entry.url, feed_id, page.status, page.error, datetime.now(UTC)))
        if result.articles is None:  # extracted pages are not kept: their articles hold what is needed
            result.pages.append(FetchedPage(entry, feed_id, page))
    if streaming:
        result.failures.extend(page_failures)
    return result


async def _until_stopped(listener: PollListener | None, coroutines: list, stopped_value) -> list:
    """Results of the coroutines, run together; those still going when the listener stops give `stopped_value`."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]

    async def watch() -> None:
        while not listener.stopped:
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()

    watcher = asyncio.ensure_future(watch()) if listener is not None else None
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if watcher is not None:
            watcher.cancel()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    return [stopped_value if isinstance(result, asyncio.CancelledError) else result for result in results]


def newest(entries: list[FeedEntry], count: int) -> list[FeedEntry]:
    """The `count` newest entries: dated ones newest first, then undated ones in feed order."""
    dated = sorted((e for e in entries if e.published_at), key=lambda e: e.published_at, reverse=True)
    return (dated + [e for e in entries if not e.published_at])[:count]


def extraction_workers(requested: int) -> int:
    """Worker processes for extraction: `requested`, or one per usable CPU core when 0."""
    return requested or len(os.sched_getaffinity(0))


@contextmanager
def extraction_pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes that extract pages (None for one worker: extraction stays in this process).

    The workers are started fresh ("spawn": the caller may hold threads, e.g. torch's or
    Prefect's, that must not be forked) and only when the first page is sent to them; each dies
    with this process.
    """
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        # A worker ends with this process, even one killed with SIGKILL (the pool is only used,
        # and shut down, by the thread that starts its workers).
        initializer=set_parent_death_signal, initargs=(os.getpid(),),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _room_for(listener: PollListener | None) -> asyncio.Semaphore | None:
    """A semaphore counting the articles the listener may still take in (None: no limit)."""
    if listener is None or not listener.capacity:
        return None
    room, loop = asyncio.Semaphore(listener.capacity), asyncio.get_running_loop()

    def release(count: int) -> None:
        for _ in range(count):
            room.release()

    def taken(count: int) -> None:  # called from the listener's consumer thread
        try:
            loop.call_soon_threadsafe(release, count)
        except RuntimeError:  # polling has ended
            pass

    listener.on_taken = taken
    return room


async def _fetch_and_extract(
    fetcher: Fetcher, extractor: Executor, entry: FeedEntry, feed_id: str, progress, on_article, listener, room=None
) -> tuple[FetchedArticle | None, FetchFailure | None]:
    """Fetch and extract one entry's page; the article goes to `listener` (then not returned) or back."""
    if room is not None:
        await room.acquire()  # released when the listener's consumer takes the article, or below
    handed = False
    try:
        if listener is not None and listener.stopped:  # the run is stopping: fetch nothing more
            return None, None
        page = await _fetch_page(fetcher, entry, progress)
        if not (page.ok and page.body):  # nothing to parse: the feed's own text, at once
            article, error = _extract(entry, feed_id, page)
        else:
            try:
                article, error = await asyncio.get_running_loop().run_in_executor(extractor, _extract, entry, feed_id, page)
            except BrokenProcessPool:  # a worker died (e.g. killed for memory): extract here instead
                if listener is not None and listener.stopped:  # killed because the run is stopping
                    return None, None
                logger.warning("extraction worker lost; extracting %s in the flow's process", entry.url)
                article, error = _extract(entry, feed_id, page)
        error = page.error or error
        failure = FetchFailure(entry.url, feed_id, page.status, error, datetime.now(UTC)) if error else None
        if article is not None and on_article is not None:
            on_article(article)
        if listener is None:
            return article, failure
        listener.entry_done(feed_id, entry.url, article, failure)
        handed = article is not None
        return None, failure
    finally:
        if room is not None and not handed:
            room.release()


def extract_articles(pages: list[FetchedPage]) -> tuple[list[FetchedArticle], list[FetchFailure]]:
    """The articles of fetched pages (CPU work, kept apart from fetching so it can run elsewhere).

    Returns:
        The articles, and a failure row for each page whose extraction failed (its entry's own
        text is kept instead).
    """
    articles, failures = [], []
    for fetched in pages:
        article, error = _extract(fetched.entry, fetched.feed_id, fetched.page)
        if article is not None:
            articles.append(article)
        if error:
            status = fetched.page.status if fetched.page else None
            failures.append(FetchFailure(fetched.entry.url, fetched.feed_id, status, error, datetime.now(UTC)))
    return articles, failures


def _extract(entry: FeedEntry, feed_id: str, page: FetchResult | None) -> tuple[FetchedArticle | None, str | None]:
    """`_article`, guarded: a page the extractor fails on keeps the entry's own text, with the error."""
    try:
        return _fetched_article(entry, feed_id, page), None
    except Exception as error:  # noqa: BLE001 - any parser failure on hostile input is one page's problem
        logger.warning("extraction of %s failed: %s: %s", entry.url, type(error).__name__, error)
        message = f"extraction failed: {type(error).__name__}: {error}"[:500]
        return _fetched_article(entry, feed_id, None), message


def _parse(feed: FeedRecord, response: FetchResult) -> tuple[list[FeedEntry], str | None]:
    """A feed response's entries and its error (None when it answered well, 304 included)."""
    if response.not_modified or not response.ok:
        return [], response.error
    try:
        parsed = parse_feed(response.body, url=response.final_url, content_type=response.content_type)
    except FeedError as failure:
        return [], str(failure)
    if parsed.warning:
        logger.info("feed %s parsed with a warning: %s", feed.url, parsed.warning)
    return list(parsed.entries), None


async def ask_feeds(feeds: list[FeedRecord], policy: FetchPolicy) -> list[FetchResult]:
    """Each feed's answer to the conditional GET a poll sends (`flows.idle` asks before starting a flow)."""
    async with Fetcher(policy) as fetcher:
        return await asyncio.gather(*(_fetch_feed(fetcher, feed, lambda stage, count: None) for feed in feeds))


# Feeds' answers already received in this process (`flows.idle`: some changed, so the flow runs),
# by feed id, with when they came: the next poll takes them instead of asking those feeds again.
_feed_answers: dict[str, tuple[float, FetchResult]] = {}
# Answers older than this are not used (asked again): the flow normally starts seconds after.
FEED_ANSWERS_KEPT_SECONDS = 300.0


def keep_feed_answers(feeds: list[FeedRecord], responses: list[FetchResult]) -> None:
    """Keep these answers for the next `poll` in this process."""
    now = time.monotonic()
    _feed_answers.update((feed.feed_id, (now, response)) for feed, response in zip(feeds, responses))


def take_feed_answers() -> dict[str, FetchResult]:
    """The kept answers still fresh, by feed id; all are forgotten (each is used once)."""
    now = time.monotonic()
    answers = {feed_id: response for feed_id, (kept_at, response) in _feed_answers.items()
               if now - kept_at <= FEED_ANSWERS_KEPT_SECONDS}
    _feed_answers.clear()
    return answers


async def _answer_of(fetcher: Fetcher, feed: FeedRecord, progress, answered: dict[str, FetchResult]) -> FetchResult:
    if feed.feed_id in answered:
        progress("feeds", 1)
        return answered[feed.feed_id]
    return await _fetch_feed(fetcher, feed, progress)


async def _fetch_feed(fetcher: Fetcher, feed: FeedRecord, progress) -> FetchResult:
    response = await fetcher.fetch(feed.url, etag=feed.etag, last_modified=feed.last_modified, accept=FEED_TYPES)
    progress("feeds", 1)
    return response


async def _fetch_page(fetcher: Fetcher, entry: FeedEntry, progress) -> FetchResult:
    response = await fetcher.fetch(entry.url, accept=PAGE_TYPES, check_robots=True)
    progress("pages", 1)
    return response


def _fetched_article(entry: FeedEntry, feed_id: str, page: FetchResult | None) -> FetchedArticle | None:
    """The page's extraction with the entry's metadata filling gaps; else the entry summary."""
    # An entry that gives its date and title spares the page's date search (the feed's date wins
    # anyway), and one that names its author, the page's byline search.
    dated = bool(entry.published_at and entry.title)
    extracted = (
        article_from_html(
            page.body, page.final_url, charset=page.charset,
            entry_title=entry.title if dated else None, entry_author=entry.author if dated else None,
        )
        if page and page.ok and page.body else None
    )
    if extracted and extracted.text:
        article = replace(
            extracted,
            url=entry.url,
            title=extracted.title or entry.title,
            # The feed's date is explicit metadata; a page date may be guessed from its text.
            published_at=entry.published_at or extracted.published_at,
            author=extracted.author or entry.author,
            # Where the page says it lives, else where redirects ended: both name the article.
            canonical_url=extracted.canonical_url or (page.final_url if page.final_url != entry.url else None),
        )
        return FetchedArticle(
            article, feed_id, "page", zlib.compress(page.body, 6), page.final_url, page.content_type
        )
    # Never lose an article: without a usable page, keep what the feed said, marked as such.
    text, source = (entry.summary, "feed-summary") if entry.summary else (entry.title, "feed-title")
    if not text:
        return None
    text = normalize_text(text)
    article = Article(entry.url, entry.title, text, entry.published_at, entry.author, language=detect_language(text))
    return FetchedArticle(article, feed_id, source)


def fetch_policy(settings: Settings) -> FetchPolicy:
    """Fetching limits and manners from the settings."""
    return FetchPolicy(
        user_agent=settings.user_agent,
        connect_timeout=settings.fetch_connect_timeout,
        read_timeout=settings.fetch_read_timeout,
        total_timeout=settings.fetch_total_timeout,
        max_bytes=settings.fetch_max_bytes,
        global_concurrency=settings.fetch_concurrency,
        per_host_concurrency=settings.fetch_host_concurrency,
        per_host_delay=settings.fetch_host_delay,
        allow_private_networks=settings.allow_private_networks,
        respect_robots=settings.respect_robots,
    )
