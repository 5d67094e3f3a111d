"""The ingest flows: Prefect tasks over bounded batches, wrapping the stages in `flows.pipeline`."""

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote
from rich.progress import MofNCompleteColumn, Progress

from extract.content import Article
from extract.fixtures import SkippedFile, fixture_files, read_fixture_files
from flows import alerts, embedding, pipeline, search
from flows.alerts import WatchEvaluation
from flows.feed_list import FeedFileError, import_feed_file
from flows.batches import ArticleStream
from flows.runs import RunSummary, finish_run, recorded_run
from flows.polling import (
    FetchedArticle, FetchedPage, PollResult, extract_articles, extraction_pool, extraction_workers, fetch_policy, poll,
)
from flows.runners import chunk_runner, chunked
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.feeds import due_feeds
from warehouse.load import LoadBatch
from warehouse.lookups import stored_urls


@task(name="list-fixtures", cache_policy=NO_CACHE)
def list_fixtures(directory: Path) -> list[Path]:
    """The files of a directory that may hold articles, in name order."""
    return fixture_files(directory)


@task(name="read-fixtures", cache_policy=NO_CACHE)
def read_fixtures(paths: list[Path], directory: Path, max_bytes: int) -> tuple[list[Article], list[SkippedFile]]:
    """Read and clean article files (a batch of them)."""
    return read_fixture_files(paths, directory, max_bytes=max_bytes)


class RunProgress:
    """Rich progress bars on a terminal (feeds polled, pages fetched, articles stored); nothing elsewhere."""

    def __init__(self):
        self._progress = None
        self._bars: dict[str, int] = {}

    def __enter__(self) -> "RunProgress":
        if sys.stderr.isatty():
            self._progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def total(self, stage: str, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._bar(stage), total=total)

    def advance(self, stage: str, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._bar(stage), count)

    def _bar(self, stage: str) -> int:
        if stage not in self._bars:
            self._bars[stage] = self._progress.add_task(stage, total=None)
        return self._bars[stage]


@task(name="poll-feeds", cache_policy=NO_CACHE)
def poll_feeds(db: Path, settings: Settings, stream: ArticleStream, progress: RunProgress) -> PollResult:
    """Poll the due feeds and fetch their new entries' pages; failures become rows, not errors.

    With the local task runner, the articles reach `stream` as they are extracted (in worker
    processes, for runs of many pages) and the stream is closed at the end; with Dask, the pages
    are returned for extraction on the cluster.
    """
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        feeds = due_feeds(connection, datetime.now(UTC))
    progress.total("feeds", len(feeds))

    def is_stored(urls: list[str]) -> set[str]:
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            return stored_urls(connection, urls)

    interval = timedelta(minutes=settings.poll_interval_minutes)
    local = settings.task_runner != "dask"
    try:
        with extraction_pool(extraction_workers(settings.extract_workers) if local else 1) as extractor:
            polled = asyncio.run(poll(
                feeds, fetch_policy(settings), interval, is_stored, progress.advance, fetch_pages=settings.fetch_pages,
                extractor=extractor, max_new_entries=settings.feed_max_new_entries, listener=stream,
            ))
        if polled.articles is None and local:  # few pages, or the feeds' own text: extracted here, now
            stream.add_poll(polled)
            stream.add(*extract_articles(polled.pages))
    finally:
        if local:
            stream.close()
    return polled


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(articles: list[Article], db: Path, ingested_at: datetime, settings: Settings):
    """Key the articles and drop those already stored."""
    return pipeline.prepare_articles(articles, db, ingested_at, settings)


@task(name="extract-pages", cache_policy=NO_CACHE)
def extract_pages(pages: list[FetchedPage]) -> tuple[list[FetchedArticle], list]:
    """Extract the articles of fetched pages (a chunk of them)."""
    return extract_articles(pages)


@task(name="embed", cache_policy=NO_CACHE)
def embed(texts: list[str], settings: Settings):
    """Embed texts (a chunk of the batch's texts that have no stored vector)."""
    return embedding.embed_texts(texts, settings)


def _chunks(items: list, settings: Settings) -> list[list]:
    """Chunks for a Dask cluster; locally the batch is one chunk."""
    if not items:
        return []
    return chunked(items, settings.dask_chunk_size) if settings.task_runner == "dask" else [items]


@task(name="dedupe-and-cluster", cache_policy=NO_CACHE)
def dedupe_and_cluster(prepared, db: Path, settings: Settings):
    """Link duplicates to their earliest copy and assign every article a story."""
    return pipeline.dedupe_and_cluster(prepared, db, settings)


@task(name="match-watches", cache_policy=NO_CACHE)
def match_watches(prepared, verdicts, db: Path, settings: Settings) -> WatchEvaluation | None:
    """The batch's articles every watch matches (None when there are no watches)."""
    rules = alerts.read_watch_rules(db, settings)
    if not rules:
        return None
    story_of = {article_id: assignment.story_id for article_id, assignment in verdicts.stories.items()}
    return WatchEvaluation(alerts.match_batch(prepared, story_of, rules, settings), settings.alert_developing_factor)


@task(name="deliver-alerts", cache_policy=NO_CACHE)
def deliver_alerts(db: Path, settings: Settings) -> alerts.DeliveryReport:
    """Attempt every due alert delivery once (failures are retried by later runs)."""
    return alerts.deliver_due_alerts(db, settings)


@task(name="update-search-index", cache_policy=NO_CACHE)
def update_search_index(db: Path, settings: Settings) -> int:
    """Add the run's articles to the full-text index beside the warehouse."""
    return search.sync_search_index(db, settings)


def _after_batches(db: Path, settings: Settings, totals: RunSummary) -> None:
    """Deliver the alerts and bring the search index up to date; neither can fail the run."""
    totals.delivered, totals.delivery_failures = finish_run(
        lambda: deliver_alerts(db, settings), lambda: update_search_index(db, settings), get_run_logger(),
    )


@task(name="load", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def load(batch, db: Path, settings: Settings):
    """Write the batch to DuckDB in one transaction (retried: another process may hold the file)."""
    return pipeline.load(batch, db, settings)


@flow(name="ingest-fixtures", log_prints=False)
def ingest_fixtures(directory: Path, db: Path, settings: Settings | None = None) -> RunSummary:
    """Ingest the article files of a directory into the warehouse.

    Reads `*.txt` and `*.html` files, cleans them, embeds them, links duplicates to their
    earliest copy, assigns stories and loads everything into DuckDB, in batches of at most
    `NEWSWATCH_BATCH_SIZE` files (in name order; oldest first within a batch), each read, decided
    and loaded in one transaction before the next is read. Running it again on the same
    directory changes nothing; a stopped run keeps the batches it stored.

    Args:
        directory: Folder of article files.
        db: DuckDB file.
        settings: Pipeline settings (from the environment when omitted).

    Returns:
        Counts of what the run did.
    """
    settings = settings or Settings()

    def work() -> RunSummary:
        paths = list_fixtures(directory)
        totals, clock = RunSummary(), _BatchClock()
        with RunProgress() as progress, chunk_runner(settings) as run_chunks:
            progress.total("files", len(paths))
            for batch in chunked(paths, settings.batch_size):
                articles, skipped_here = read_fixtures(batch, directory, settings.fixture_max_bytes)
                for skip in skipped_here:
                    get_run_logger().warning("skipped %s: %s", skip.path, skip.reason)
                totals.skipped += skipped_here
                totals.read += len(articles)
                if articles:
                    _store_batch(articles, db, settings, "fixtures", run_chunks, totals, clock, progress)
                progress.advance("files", len(batch))
        _after_batches(db, settings, totals)
        return _logged(totals)

    return recorded_run("ingest-fixtures", db, work, settings)


@flow(name="ingest-feeds", log_prints=False)
def ingest_feeds(db: Path, settings: Settings | None = None) -> RunSummary:
    """Poll every due feed and ingest its new articles into the warehouse.

    Feeds are fetched with conditional GET (an unchanged feed costs a 304 and no parsing), at
    most `NEWSWATCH_FEED_MAX_NEW_ENTRIES` new entries of a feed per run; new entries' pages are
    fetched politely (per-host limits, robots.txt) and extracted, and the articles are embedded,
    deduplicated, clustered and loaded in batches of at most `NEWSWATCH_BATCH_SIZE` while the
    rest are still being fetched. Each batch is one transaction, with the health and validators
    of the feeds it completes, so a stopped run keeps what it stored and the next run resumes.
    Failures are recorded per feed and per article and never stop the run.

    Args:
        db: DuckDB file.
        settings: Pipeline settings (from the environment when omitted).

    Returns:
        Counts of what the run did.
    """
    settings = settings or Settings()

    def work() -> RunSummary:
        if settings.feeds_file is not None:
            try:
                listed, added = import_feed_file(settings.feeds_file, db, datetime.now(UTC), settings)
                if added:
                    get_run_logger().info("added %d of the %d feeds in %s", added, listed, settings.feeds_file)
            except FeedFileError as error:
                get_run_logger().error("feed list not read: %s", error)
        local = settings.task_runner != "dask"
        # Locally, articles are embedded while other pages are still being fetched and extracted.
        prefetch = embedding.EmbeddingPrefetch(db, settings) if local else None
        stream = ArticleStream(
            on_article=(lambda item: prefetch.add(item.article.text)) if prefetch else None,
            # Fetching waits while two batches wait to be stored: memory stays bounded however big the run.
            capacity=2 * settings.batch_size,
        )
        totals, clock = RunSummary(), _BatchClock()
        with RunProgress() as progress, chunk_runner(settings) as run_chunks:
            if local:  # polled in a thread of its own, stored here batch by batch as articles arrive
                polling = poll_feeds.submit(db, settings, stream, progress)
            else:  # polled first, then extracted in chunks on the cluster
                polled = poll_feeds(db, settings, stream, progress)
                stream.add_poll(polled)
                for articles, failures in run_chunks(extract_pages, [{"pages": c} for c in _chunks(polled.pages, settings)]):
                    stream.add(articles, failures)
                stream.close()
            try:
                while (batch := stream.next_batch(settings.batch_size)) is not None:
                    fetched = {item.article.url: item for item in batch}
                    _store_batch(
                        [item.article for item in batch], db, settings, "feeds", run_chunks, totals, clock, progress,
                        fetched=fetched, prefetch=prefetch, stream=stream,
                    )
                    progress.total("stored", stream.received if stream.closed else None)
                outcomes, failures = stream.completed_feeds([])
                if outcomes or failures:  # feeds that brought nothing to store
                    load(quote(LoadBatch(feed_outcomes=outcomes, fetch_failures=failures)), db, settings)
            except BaseException:
                stream.stop()  # polling skips what it has not fetched yet; nothing waits for it
                raise
            if prefetch is not None:
                prefetch.finish()
            if local:
                polled = polling.result()
        totals.read = stream.received
        totals.feeds_polled, totals.not_modified, totals.failures = polled.feeds_polled, polled.not_modified, len(polled.failures)
        _after_batches(db, settings, totals)
        return _logged(totals)

    return recorded_run("ingest-feeds", db, work, settings)


class _BatchClock:
    """The time each batch of a run is stored at: now, and always after the previous batch (the
    vector index beside the warehouse tells batches apart by it)."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def next_batch_time(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


def _logged(summary: RunSummary) -> RunSummary:
    """The run's summary, logged in one line."""
    get_run_logger().info(
        "read %d, skipped %d, already stored %d, new %d (%d duplicates), new stories %d in %d batches, "
        "feeds polled %d (%d not modified), failures %d; alerts %d, delivered %d, not delivered %d",
        summary.read, len(summary.skipped), summary.already_stored, summary.new_articles, summary.duplicates,
        summary.new_stories, summary.batches, summary.feeds_polled, summary.not_modified, summary.failures,
        summary.alerts, summary.delivered, summary.delivery_failures,
    )
    return summary


def _store_batch(
    articles: list[Article], db, settings, source, run_chunks, totals: RunSummary, clock: _BatchClock,
    progress: RunProgress, *,
    fetched=None, prefetch=None, stream: ArticleStream | None = None,
) -> None:
    """One batch through the stages, decided against what is stored, loaded in one transaction:
    prepare → embed → dedupe and cluster → load."""
    ingested_at = clock.next_batch_time()
    # Batches are passed `quote`d to the tasks run here: Prefect would otherwise walk every object
    # in them, looking for futures, before each task (a quarter of a 1,171-article run's time).
    # Chunks for a Dask cluster (`run_chunks`) are not: its runner does not unwrap them.
    prepared, already_stored = prepare(quote(articles), db, ingested_at, settings)

    def embed_in_chunks(texts: list[str]) -> tuple[list, list[int], list[bool]]:
        embedded = run_chunks(embed, [{"texts": chunk, "settings": settings} for chunk in _chunks(texts, settings)])
        return tuple([value for parts in embedded for value in parts[field]] for field in range(3))

    prefetched = prefetch.vectors_for(item.text_hash for item in prepared) if prefetch is not None else {}
    embeddings = pipeline.embed_articles(prepared, db, settings, prefetched=prefetched, embed=embed_in_chunks)
    verdicts = dedupe_and_cluster(quote(prepared), db, settings)
    batch = pipeline.build_load_batch(prepared, verdicts, embeddings, source, ingested_at, fetched)
    batch.watches = match_watches(quote(prepared), quote(verdicts), db, settings)
    if stream is not None:
        batch.feed_outcomes, batch.fetch_failures = stream.completed_feeds(article.url for article in articles)
    result = load(quote(batch), db, settings)
    totals.batches += 1
    totals.already_stored += already_stored
    totals.new_articles += result.articles
    totals.duplicates += result.duplicates
    totals.new_stories += verdicts.new_stories
    totals.new_embeddings += result.embeddings
    totals.alerts += result.alerts
    progress.advance("stored", len(articles))
    get_run_logger().info(
        "batch %d stored: %d new articles (%d duplicates, %d new stories), %d already stored; %d new in this run so far",
        totals.batches, result.articles, result.duplicates, verdicts.new_stories, already_stored, totals.new_articles,
    )
