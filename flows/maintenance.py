"""Maintenance over what is already stored: Parquet exports, re-extraction from kept pages, feed health."""

import logging
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from extract.content import EXTRACTOR, article_from_html, text_hash
from extract.terms import extract_terms
from flows.embedding import embedding_model_key, stored_or_embed, whole_model_key
from flows.search import discard_search_index
from flows.runs import RunSummary, recorded_run
from flows.settings import Settings
from reading.feeds import needing_attention
from warehouse.connection import open_warehouse
from warehouse.exports import export_articles
from warehouse.feeds import list_feeds
from warehouse.pages import Extraction, stored_pages, update_extractions
from warehouse.vector_index import discard_indexes
from warehouse.runs import last_completed_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReextractSummary:
    """What a re-extraction did."""

    pages: int
    changed: int
    unchanged: int
    failed: int
    new_embeddings: int


def reextract_pages(db: Path, settings: Settings, *, everything: bool = False, chunk_size: int = 200) -> ReextractSummary:
    """Rebuild article texts from the stored raw pages with the installed extractor, without refetching.

    Texts, titles, metadata, terms and vectors are replaced; duplicate links and stories stay as
    they were decided. The database is opened only while a chunk is read or written.

    Args:
        db: DuckDB file.
        settings: Embedding settings (changed texts are embedded again).
        everything: Re-extract every page, not only those extracted by another extractor version.
        chunk_size: Pages read, extracted and written together.

    Returns:
        Counts of pages seen, texts changed and unchanged, and pages that gave no text (kept as they were).
    """
    model_key = embedding_model_key(settings)
    after, pages = "", 0
    changed = unchanged = failed = new_embeddings = 0
    while True:
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            chunk = stored_pages(connection, after, chunk_size, None if everything else EXTRACTOR)
        if not chunk:
            break
        after = chunk[-1].article_id
        pages += len(chunk)
        extractions = []
        for page in chunk:
            article = article_from_html(zlib.decompress(page.html_zlib), page.final_url)
            if article is None:
                failed += 1  # keep the stored text: a worse extractor must not erase an article
                continue
            digest = text_hash(article.text)
            changed += digest != page.text_hash
            unchanged += digest == page.text_hash
            extractions.append(Extraction(
                article_id=page.article_id,
                title=article.title or page.title,
                text=article.text,
                text_hash=digest,
                author=article.author or page.author,
                language=article.language,
                site_name=article.site_name,
                image_url=article.image_url,
                extracted_with=EXTRACTOR,
                terms=dict(extract_terms(article.title or page.title, article.text)),
                is_original=page.is_original,
            ))
        embedded = stored_or_embed({item.text_hash: item.text for item in extractions}, db, settings)
        embeddings = embedded.rows(model_key, whole_model_key(settings))
        new_embeddings += len(embeddings)
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            update_extractions(connection, extractions, embeddings)
        if changed:  # changed texts mean changed vectors and words: the indexes are rebuilt from DuckDB when next needed
            discard_indexes(db)
            discard_search_index(db)
        logger.info("re-extracted %d pages so far", pages)
    return ReextractSummary(pages, changed, unchanged, failed, new_embeddings)


@task(name="export-new-articles", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def export_new_articles(db: Path, export_dir: Path, until: datetime, settings: Settings) -> tuple[int, Path]:
    """Write the articles ingested since the last completed maintenance run to one Parquet file."""
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        last = last_completed_run(connection, "maintenance")
        path = export_dir / f"articles-{until:%Y%m%dT%H%M%SZ}.parquet"
        return export_articles(connection, last.started_at if last else None, until, path), path


@task(name="reextract-stale-pages", cache_policy=NO_CACHE)
def reextract_stale_pages(db: Path, settings: Settings) -> ReextractSummary:
    """Re-extract the pages an older extractor version produced."""
    return reextract_pages(db, settings)


@flow(name="maintenance", log_prints=False)
def maintenance(db: Path, settings: Settings | None = None) -> RunSummary:
    """Daily upkeep: export new articles to Parquet, re-extract stale pages, report feed health.

    The export holds the articles ingested since the last completed maintenance run (runs never
    interleave, so none is missed or exported twice); it goes to `NEWSWATCH_EXPORT_DIR`, by default
    `exports/` beside the database. Feeds that are failing or silent are listed in a
    `feed-health` artifact.

    Args:
        db: DuckDB file.
        settings: Settings (from the environment when omitted).

    Returns:
        The run's summary; its message says what was exported and found.
    """
    settings = settings or Settings()

    def work() -> RunSummary:
        logger = get_run_logger()
        now = datetime.now(UTC)
        export_dir = settings.export_dir or Path(db).parent / "exports"
        exported, path = export_new_articles(db, export_dir, now, settings)
        stale = reextract_stale_pages(db, settings)
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            feeds = list_feeds(connection)
        attention = needing_attention(feeds, now, settings.silent_feed_days)
        rows = "\n".join(f"| {health.feed.name or health.feed.url} | {'; '.join(health.attention)} |" for health in attention)
        create_markdown_artifact(
            f"## Feed health\n\n{len(feeds)} feeds, {len(attention)} need attention.\n\n"
            + (f"| feed | why |\n|---|---|\n{rows}" if attention else ""),
            key="feed-health",
            description="Feeds that are failing or silent",
        )
        message = (
            f"exported {exported} articles" + (f" to {path}" if exported else "")
            + f"; re-extracted {stale.pages} pages ({stale.changed} changed); {len(attention)} of {len(feeds)} feeds need attention"
        )
        logger.info(message)
        return RunSummary(new_embeddings=stale.new_embeddings, message=message)

    return recorded_run("maintenance", db, work, settings)
