"""The ingest flow: Prefect tasks over whole batches, wrapping the stages in `flows.pipeline`."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from extract.content import Article
from extract.fixtures import SkippedFile, read_fixture_dir
from flows import pipeline
from flows.settings import Settings


@dataclass(frozen=True)
class RunSummary:
    """What one ingest run did."""

    read: int
    skipped: list[SkippedFile]
    already_stored: int
    new_articles: int
    duplicates: int
    new_stories: int
    new_embeddings: int


@task(name="read-fixtures", cache_policy=NO_CACHE)
def read_fixtures(directory: Path) -> tuple[list[Article], list[SkippedFile]]:
    """Read and clean every article file in a directory."""
    return read_fixture_dir(directory)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(articles: list[Article], db: Path, ingested_at: datetime):
    """Key the articles and drop those already stored."""
    return pipeline.prepare_articles(articles, db, ingested_at)


@task(name="embed", cache_policy=NO_CACHE)
def embed(prepared, db: Path, settings: Settings):
    """Embed the batch, reusing stored vectors of unchanged texts."""
    return pipeline.embed_articles(prepared, db, settings)


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
    logger = get_run_logger()
    ingested_at = datetime.now(UTC)
    articles, skipped = read_fixtures(directory)
    for skip in skipped:
        logger.warning("skipped %s: %s", skip.path, skip.reason)
    prepared, already_stored = prepare(articles, db, ingested_at)
    embeddings = embed(prepared, db, settings)
    verdicts = decide(prepared, db, settings)
    batch = pipeline.build_load_batch(prepared, verdicts, embeddings, "fixtures", ingested_at)
    result = load(batch, db)
    summary = RunSummary(
        read=len(articles),
        skipped=skipped,
        already_stored=already_stored,
        new_articles=result.articles,
        duplicates=result.duplicates,
        new_stories=verdicts.new_stories,
        new_embeddings=result.embeddings,
    )
    logger.info(
        "read %d, skipped %d, already stored %d, new %d (%d duplicates), new stories %d",
        summary.read, len(skipped), already_stored, summary.new_articles, summary.duplicates, summary.new_stories,
    )
    return summary
