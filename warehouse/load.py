"""Idempotent, transactional loads: a batch lands whole or not at all, and never twice.

Keys, in one place:

- ``articles``: ``article_id`` (a hash of the URL as fetched); a load inserts only new rows (re-extraction
  later updates texts in place: `warehouse.pages`).
- ``embeddings``: ``(text_hash, model)``: unchanged text is never embedded again.
- ``article_terms``: ``(article_id, term)``; ``terms``: ``term``, counted once per new original.
- ``pages``: ``article_id``; ``feeds``: updated in place by ``feed_id``; ``fetch_failures``: append-only.

Feed validators (ETag, Last-Modified) are saved in the same transaction as the articles they
led to, so a run killed before loading fetches those feeds in full again and loses nothing; the
alerts the articles set off are decided and stored in it too (`LoadBatch.watches`, which the flow
provides: `flows.alerts.WatchEvaluation`).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import duckdb
import pyarrow as pa

from warehouse.feeds import FeedOutcome, FetchFailure, record_feed_outcomes, record_fetch_failures
from warehouse.sql import execute, transaction
from warehouse.watches import ArticleMatch

logger = logging.getLogger(__name__)


@dataclass
class ArticleRow:
    """One row of the `articles` table."""

    article_id: str
    url: str
    canonical_url: str
    title: str | None
    published_at: datetime | None
    ingested_at: datetime
    text: str
    text_hash: str
    author: str | None
    language: str | None
    site_name: str | None
    source: str
    duplicate_of: str | None
    duplicate_kind: str | None
    duplicate_similarity: float | None
    story_id: str
    story_similarity: float | None
    feed_id: str | None = None
    text_source: str | None = None
    image_url: str | None = None
    extracted_with: str | None = None


@dataclass
class EmbeddingRow:
    """One row of the `embeddings` table."""

    text_hash: str
    model: str
    vector: list[float]
    chunk_count: int
    created_at: datetime


@dataclass
class PageRow:
    """One row of the `pages` table: the raw HTML an article was extracted from, compressed."""

    article_id: str
    final_url: str
    content_type: str | None
    html_zlib: bytes
    fetched_at: datetime


class AlertRecorder(Protocol):
    """A batch's watch matches, and what records them and decides and stores their alerts.

    The warehouse only runs it inside the load's transaction; the flow provides it
    (`flows.alerts.WatchEvaluation`), since deciding is not the warehouse's.
    """

    matches: list[ArticleMatch]

    def record_alerts(self, connection: duckdb.DuckDBPyConnection, matches: list[ArticleMatch], story_ids: list[str],
                      now: datetime) -> list[str]:
        """Record these matches and the alerts they set off in the load's transaction; the ids of the alerts stored."""


@dataclass
class LoadBatch:
    """Everything one batch writes; with `watches`, its alerts are decided in the same transaction."""

    articles: list[ArticleRow] = field(default_factory=list)
    embeddings: list[EmbeddingRow] = field(default_factory=list)
    article_terms: dict[str, dict[str, int]] = field(default_factory=dict)
    pages: list[PageRow] = field(default_factory=list)
    feed_outcomes: list[FeedOutcome] = field(default_factory=list)
    fetch_failures: list[FetchFailure] = field(default_factory=list)
    watches: AlertRecorder | None = None


@dataclass(frozen=True)
class LoadResult:
    """What a load changed."""

    articles: int
    duplicates: int
    embeddings: int
    alerts: int = 0


def _table(rows: list, cls) -> pa.Table:
    names = list(cls.__dataclass_fields__)
    return pa.Table.from_pylist([{name: getattr(row, name) for name in names} for row in rows])


def insert_embeddings(connection: duckdb.DuckDBPyConnection, rows: list[EmbeddingRow]) -> int:
    """Insert vectors not stored yet (inside the caller's transaction); returns how many were new."""
    if not rows:
        return 0
    connection.register("new_embeddings", _table(rows, EmbeddingRow))
    before = execute(connection, "SELECT count(*) FROM embeddings")[0][0]
    execute(connection, "INSERT OR IGNORE INTO embeddings BY NAME SELECT * FROM new_embeddings")
    added = execute(connection, "SELECT count(*) FROM embeddings")[0][0] - before
    connection.unregister("new_embeddings")
    return added


def add_document_counts(connection: duckdb.DuckDBPyConnection, article_terms: str, originals: list[str]) -> None:
    """Count the terms of these original articles, read from the table or view `article_terms`, into `terms`.

    Each original counts once per term (`terms.document_count` is over originals; duplicates would
    count one text twice). Inside the caller's transaction.
    """
    execute(
        connection,
        f"""
        INSERT INTO terms BY NAME
        SELECT term, count(*) AS document_count FROM {article_terms}
        WHERE article_id IN (SELECT unnest(?)) GROUP BY term
        ON CONFLICT (term) DO UPDATE SET document_count = terms.document_count + excluded.document_count
        """,
        [originals],
    )


TERM_SCHEMA = pa.schema([("article_id", pa.string()), ("term", pa.string()), ("count", pa.int32())])


def term_table(terms_of: dict[str, dict[str, int]]) -> pa.Table:
    """`article_terms` rows for these articles' term counts."""
    return pa.Table.from_pylist(
        [{"article_id": article_id, "term": term, "count": count} for article_id, terms in terms_of.items()
         for term, count in terms.items()],
        schema=TERM_SCHEMA,
    )


def load_batch(connection: duckdb.DuckDBPyConnection, batch: LoadBatch) -> LoadResult:
    """Write a batch in one transaction, skipping anything already stored.

    Args:
        connection: A writable warehouse connection.
        batch: Articles with their duplicate and story verdicts, new embeddings and terms.

    Returns:
        How many rows were new.
    """
    with transaction(connection):
        stored = set()
        if batch.articles:
            ids = [row.article_id for row in batch.articles]
            stored = {r[0] for r in execute(
                connection, "SELECT article_id FROM articles WHERE article_id IN (SELECT unnest(?))", [ids]
            )}
        articles = [row for row in batch.articles if row.article_id not in stored]
        if articles:
            connection.register("new_articles", _table(articles, ArticleRow))
            execute(connection, "INSERT INTO articles BY NAME SELECT * FROM new_articles")
            connection.unregister("new_articles")
            connection.register("new_terms", term_table({row.article_id: batch.article_terms.get(row.article_id, {}) for row in articles}))
            execute(connection, "INSERT INTO article_terms BY NAME SELECT * FROM new_terms")
            add_document_counts(connection, "new_terms", [row.article_id for row in articles if row.duplicate_of is None])
            connection.unregister("new_terms")
        pages = [row for row in batch.pages if row.article_id not in stored]
        if pages:
            connection.register("new_pages", _table(pages, PageRow))
            execute(connection, "INSERT OR IGNORE INTO pages BY NAME SELECT * FROM new_pages")
            connection.unregister("new_pages")
        record_feed_outcomes(connection, batch.feed_outcomes)
        record_fetch_failures(connection, batch.fetch_failures)
        embeddings = insert_embeddings(connection, batch.embeddings)
        alerts = []
        if batch.watches is not None and articles:
            new_ids = {row.article_id for row in articles}
            alerts = batch.watches.record_alerts(
                connection, [match for match in batch.watches.matches if match.article_id in new_ids],
                [row.story_id for row in articles], articles[0].ingested_at,
            )
    duplicates = sum(1 for row in articles if row.duplicate_of)
    logger.info("loaded %d articles (%d duplicates), %d embeddings, %d alerts", len(articles), duplicates, embeddings, len(alerts))
    return LoadResult(len(articles), duplicates, embeddings, len(alerts))
