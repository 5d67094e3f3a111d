"""Named read queries shared by the flows, the command line and the dashboard.

Every query binds its parameters; none is built from user strings.
"""

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np

from warehouse.sql import run


def stored_urls(connection: duckdb.DuckDBPyConnection, urls: list[str]) -> set[str]:
    """Which of these URLs are already stored, as fetched or as canonical URL."""
    rows = run(
        connection,
        "SELECT url FROM articles WHERE url IN (SELECT unnest(?))"
        " UNION SELECT canonical_url FROM articles WHERE canonical_url IN (SELECT unnest(?))",
        [urls, urls],
    )
    return {row[0] for row in rows}


def stored_embeddings(
    connection: duckdb.DuckDBPyConnection, model: str, text_hashes: list[str]
) -> dict[str, np.ndarray]:
    """Stored vectors of this model for these text hashes."""
    rows = run(connection, 
        "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?))",
        [model, text_hashes],
    )
    return {text_hash: np.asarray(vector, dtype=np.float32) for text_hash, vector in rows}


def term_statistics(connection: duckdb.DuckDBPyConnection, terms: list[str]) -> tuple[dict[str, int], int]:
    """Document counts of these terms over stored originals, and how many originals there are."""
    counts = dict(run(connection, 
        "SELECT term, document_count FROM terms WHERE term IN (SELECT unnest(?))", [terms]
    ))
    total = run(connection, "SELECT count(*) FROM articles WHERE duplicate_of IS NULL")[0][0]
    return counts, total


@dataclass
class StoredArticle:
    """A stored article as dedupe and clustering see it."""

    article_id: str
    story_id: str
    duplicate_of: str | None
    canonical_url: str
    text_hash: str
    text: str
    vector: np.ndarray | None
    event_time: datetime
    terms: dict[str, int]


def recent_articles(
    connection: duckdb.DuckDBPyConnection,
    model: str,
    since: datetime | None,
    canonical_urls: list[str],
    text_hashes: list[str],
) -> list[StoredArticle]:
    """Members of the stories active since `since` (all if None), plus exact URL or text matches.

    An article's event time is its publish time, else when it was ingested. Oldest first.
    """
    rows = run(connection, 
        """
        WITH active AS (
            SELECT story_id FROM articles GROUP BY story_id
            HAVING ?::TIMESTAMPTZ IS NULL OR max(coalesce(published_at, ingested_at)) >= ?::TIMESTAMPTZ
        ),
        article_term_lists AS (
            SELECT article_id, list(term) AS terms, list(count) AS counts FROM article_terms GROUP BY article_id
        )
        SELECT a.article_id, a.story_id, a.duplicate_of, a.canonical_url, a.text_hash, a.text, e.vector,
               coalesce(a.published_at, a.ingested_at) AS event_time, t.terms, t.counts
        FROM articles a
        LEFT JOIN embeddings e ON e.text_hash = a.text_hash AND e.model = ?
        LEFT JOIN article_term_lists t ON t.article_id = a.article_id
        WHERE a.story_id IN (SELECT story_id FROM active)
           OR a.canonical_url IN (SELECT unnest(?))
           OR a.text_hash IN (SELECT unnest(?))
        ORDER BY event_time, a.ingested_at, a.article_id
        """,
        [since, since, model, canonical_urls, text_hashes],
    )
    return [
        StoredArticle(
            article_id, story_id, duplicate_of, canonical_url, text_hash, text,
            None if vector is None else np.asarray(vector, dtype=np.float32),
            event_time, dict(zip(terms or [], counts or [])),
        )
        for article_id, story_id, duplicate_of, canonical_url, text_hash, text, vector, event_time, terms, counts in rows
    ]


STORY_COLUMNS = ("story_id", "headline", "article_count", "duplicate_count", "first_published_at", "last_published_at")


def list_stories(connection: duckdb.DuckDBPyConnection, limit: int = 50) -> list[dict]:
    """The most recently active stories, largest first among equals."""
    rows = run(connection, 
        f"""
        SELECT {", ".join(STORY_COLUMNS)} FROM stories
        ORDER BY coalesce(last_published_at, last_ingested_at) DESC, article_count DESC, story_id
        LIMIT ?
        """,
        [limit],
    )
    return [dict(zip(STORY_COLUMNS, row)) for row in rows]


ARTICLE_COLUMNS = (
    "article_id", "story_id", "title", "url", "published_at", "duplicate_of", "duplicate_kind",
    "duplicate_similarity", "story_similarity",
)


def story_articles(connection: duckdb.DuckDBPyConnection, story_ids: list[str]) -> list[dict]:
    """The members of these stories, oldest first."""
    rows = run(connection, 
        f"""
        SELECT {", ".join(ARTICLE_COLUMNS)} FROM articles
        WHERE story_id IN (SELECT unnest(?))
        ORDER BY story_id, coalesce(published_at, ingested_at), url
        """,
        [story_ids],
    )
    return [dict(zip(ARTICLE_COLUMNS, row)) for row in rows]
