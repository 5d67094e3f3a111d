"""The ingest flow: Prefect tasks over whole batches, wrapping the stages in `flows.pipeline`."""

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.progress import MofNCompleteColumn, Progress

from extract.content import Article
from extract.fixtures import SkippedFile, read_fixture_dir
from flows import pipeline
from flows.history import RunSummary, recorded_run
from flows.polling import (
    FetchedArticle, FetchedPage, PollResult, extract_articles, extraction_pool, extraction_workers, fetch_policy, poll,
)
from flows.runners import chunk_runner, chunked
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.feeds import due_feeds
from warehouse.queries import stored_urls


@task(name="read-fixtures", cache_policy=NO_CACHE)
def read_fixtures(directory: Path) -> tuple[list[Article], list[SkippedFile]]:
    """Read and clean every article file in a directory."""
    return read_fixture_dir(directory)


@task(name="poll-feeds", cache_policy=NO_CACHE)
def poll_feeds(db: Path, settings: Settings, on_article=None) -> PollResult:
    """Poll the due feeds and fetch their new entries' pages; failures become rows, not errors.

    With the local task runner, pages are extracted in worker processes as they arrive
    (`PollResult.articles`, each also handed to `on_article`); with Dask, extraction is left
    to chunk tasks on the cluster.
    """
    with open_warehouse(db) as connection:
        feeds = due_feeds(connection, datetime.now(UTC))

    def is_stored(urls: list[str]) -> set[str]:
        with open_warehouse(db) as connection:
            return stored_urls(connection, urls)

    interval = timedelta(minutes=settings.poll_interval_minutes)
    workers = 1 if settings.task_runner == "dask" else extraction_workers(settings.extract_workers)
    with extraction_pool(workers) as extractor:
        if not sys.stderr.isatty():
            return asyncio.run(poll(
                feeds, fetch_policy(settings), interval, is_stored, fetch_pages=settings.fetch_pages, extractor=extractor,
                on_article=on_article,
            ))
        # On a terminal, show how far polling and page fetching have got; logs are enough elsewhere.
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), transient=True) as progress:
            bars = {"feeds": progress.add_task("feeds", total=len(feeds)), "pages": progress.add_task("pages", total=None)}
            return asyncio.run(poll(
                feeds, fetch_policy(settings), interval, is_stored,
                lambda stage, count: progress.advance(bars[stage], count), fetch_pages=settings.fetch_pages,
                extractor=extractor, on_article=on_article,
            ))


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(articles: list[Article], db: Path, ingested_at: datetime):
    """Key the articles and drop those already stored."""
    return pipeline.prepare_articles(articles, db, ingested_at)


@task(name="extract", cache_policy=NO_CACHE)
def extract(pages: list[FetchedPage]) -> list[FetchedArticle]:
    """Extract the articles of fetched pages (a chunk of them)."""
    return extract_articles(pages)


@task(name="find-stored-vectors", cache_policy=NO_CACHE)
def find_stored_vectors(prepared, db: Path, settings: Settings):
    """Stored vectors of the batch's texts, and the texts that still need one."""
    return pipeline.texts_to_embed(prepared, db, settings)


@task(name="embed", cache_policy=NO_CACHE)
def embed(texts: list[str], settings: Settings):
    """Embed texts (a chunk of the batch's new ones)."""
    return pipeline.embed_texts(texts, settings)


def _chunks(items: list, settings: Settings) -> list[list]:
    """Chunks for a Dask cluster; locally the batch is one chunk."""
    if not items:
        return []
    return chunked(items, settings.dask_chunk_size) if settings.task_runner == "dask" else [items]


@task(name="dedupe-and-cluster", cache_policy=NO_CACHE)
def decide(prepared, db: Path, settings: Settings):
    """Link duplicates to their earliest copy and assign every article a story."""
    return pipeline.decide(prepared, db, settings)


@task(name="load", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def load(batch, db: Path):
    """Write the batch to DuckDB in one transaction (retried: another process may hold the file)."""
    return pipeline.load(batch, db)


@flow(name="ingest-fixtures", log_prints=False)
def ingest_fixtures(directory: Path, db: Path, settings: Settings | None = None) -> RunSummary:
    """Ingest the article files of a directory into the warehouse.

    Reads `*.txt` and `*.html` files, cleans them, embeds them, links duplicates to their
    earliest copy, assigns stories and loads everything into DuckDB in one transaction.
    Running it again on the same directory changes nothing.

    Args:
        directory: Folder of article files.
        db: DuckDB file.
        settings: Pipeline settings (from the environment when omitted).

    Returns:
        Counts of what the run did.
    """
    settings = settings or Settings()

    def work() -> RunSummary:
        ingested_at = datetime.now(UTC)
        articles, skipped = read_fixtures(directory)
        for skip in skipped:
            get_run_logger().warning("skipped %s: %s", skip.path, skip.reason)
        with chunk_runner(settings) as run_chunks:
            return _process(articles, db, settings, ingested_at, "fixtures", run_chunks, skipped=skipped)

    return recorded_run("ingest-fixtures", db, work)


@flow(name="ingest-feeds", log_prints=False)
def ingest_feeds(db: Path, settings: Settings | None = None) -> RunSummary:
    """Poll every due feed and ingest its new articles into the warehouse.

    Feeds are fetched with conditional GET (an unchanged feed costs a 304 and no parsing);
    new entries' pages are fetched politely (per-host limits, robots.txt), extracted, embedded,
    deduplicated, clustered and loaded in one transaction together with each feed's health.
    Failures are recorded per feed and per article and never stop the run.

    Args:
        db: DuckDB file.
        settings: Pipeline settings (from the environment when omitted).

    Returns:
        Counts of what the run did.
    """
    settings = settings or Settings()

    def work() -> RunSummary:
        ingested_at = datetime.now(UTC)
        if settings.feeds_file is not None:
            try:
                listed, added = pipeline.import_feed_file(settings.feeds_file, db, ingested_at)
                if added:
                    get_run_logger().info("added %d of the %d feeds in %s", added, listed, settings.feeds_file)
            except pipeline.FeedFileError as error:
                get_run_logger().error("feed list not read: %s", error)
        # Locally, articles are embedded while other pages are still being fetched and extracted.
        prefetch = pipeline.EmbeddingPrefetch(db, settings) if settings.task_runner != "dask" else None
        try:
            polled = poll_feeds(db, settings, lambda item: prefetch.add(item.article.text) if prefetch else None)
        finally:
            prefetched = prefetch.finish() if prefetch else {}
        with chunk_runner(settings) as run_chunks:
            if polled.articles is not None:  # extracted while the pages were fetched
                articles = polled.articles
            else:
                extracted = run_chunks(extract, [{"pages": chunk} for chunk in _chunks(polled.pages, settings)])
                articles = [item for chunk in extracted for item in chunk]
            fetched = {item.article.url: item for item in articles}
            return _process(
                [item.article for item in articles], db, settings, ingested_at, "feeds", run_chunks,
                fetched=fetched, polled=polled, prefetched=prefetched,
            )

    return recorded_run("ingest-feeds", db, work)


def _process(
    articles, db, settings, ingested_at, source, run_chunks, *, skipped=(), fetched=None, polled=None, prefetched=None
) -> RunSummary:
    """The stages shared by both sources: prepare → embed → dedupe and cluster → load."""
    logger = get_run_logger()
    prepared, already_stored = prepare(articles, db, ingested_at)
    known, missing = find_stored_vectors(prepared, db, settings)

    def embed_rest(texts: list[str]) -> tuple[list, list[int]]:
        embedded = run_chunks(embed, [{"texts": chunk, "settings": settings} for chunk in _chunks(texts, settings)])
        return [v for chunk_vectors, _ in embedded for v in chunk_vectors], [c for _, counts in embedded for c in counts]

    vectors, chunk_counts = pipeline.vectors_with_prefetched(missing, prefetched or {}, embed_rest)
    embeddings = pipeline.attach_vectors(prepared, known, missing, vectors, chunk_counts, settings)
    verdicts = decide(prepared, db, settings)
    batch = pipeline.build_load_batch(prepared, verdicts, embeddings, source, ingested_at, fetched)
    if polled is not None:
        batch.feed_outcomes = polled.outcomes
        batch.fetch_failures = polled.failures
    result = load(batch, db)
    summary = RunSummary(
        read=len(articles),
        skipped=list(skipped),
        already_stored=already_stored,
        new_articles=result.articles,
        duplicates=result.duplicates,
        new_stories=verdicts.new_stories,
        new_embeddings=result.embeddings,
        feeds_polled=polled.feeds_polled if polled else 0,
        not_modified=polled.not_modified if polled else 0,
        failures=len(polled.failures) if polled else 0,
    )
    logger.info(
        "read %d, skipped %d, already stored %d, new %d (%d duplicates), new stories %d, feeds polled %d "
        "(%d not modified), failures %d",
        summary.read, len(summary.skipped), already_stored, summary.new_articles, summary.duplicates,
        summary.new_stories, summary.feeds_polled, summary.not_modified, summary.failures,
    )
    return summary
