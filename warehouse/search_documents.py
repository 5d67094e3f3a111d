"""The stored articles as the full-text index beside the warehouse takes them, read in keyset-ordered chunks."""

from datetime import datetime

import duckdb

from warehouse.sql import execute

# When an article was seen: its publish time, else when it was ingested.
_SEEN_AT = "coalesce(published_at, ingested_at)"


def article_count_and_latest(connection: duckdb.DuckDBPyConnection) -> tuple[int, datetime | None]:
    """How many articles are stored, and the latest `ingested_at` among them."""
    count, latest = execute(connection, "SELECT count(*), max(ingested_at) FROM articles")[0]
    return int(count), latest


def search_documents(
    connection: duckdb.DuckDBPyConnection, after: tuple[datetime, str] | None, ingested_after: datetime | None, limit: int
) -> list[tuple]:
    """The next stored articles in (ingested_at, article_id) order.

    Args:
        after: The (ingested_at, article_id) of the last article already read; None to start.
        ingested_after: Only articles ingested after this time (None: all of them).
        limit: How many at most.

    Returns:
        (article_id, story_id, title, text, seen_at, ingested_at) tuples.
    """
    after_at, after_id = after if after else (None, "")
    return execute(
        connection,
        f"""
        SELECT article_id, story_id, title, text, {_SEEN_AT} AS seen_at, ingested_at FROM articles
        WHERE (?::TIMESTAMPTZ IS NULL OR ingested_at > ?::TIMESTAMPTZ)
          AND (?::TIMESTAMPTZ IS NULL OR (ingested_at, article_id) > (?::TIMESTAMPTZ, ?))
        ORDER BY ingested_at, article_id
        LIMIT ?
        """,
        [ingested_after, ingested_after, after_at, after_at, after_id, limit],
    )
