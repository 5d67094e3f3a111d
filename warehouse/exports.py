"""Parquet exports of new rows, for tools that read files rather than the database."""

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

EXPORT_COLUMNS = (
    "article_id", "url", "canonical_url", "title", "published_at", "ingested_at", "text", "author", "language",
    "site_name", "image_url", "feed_id", "text_source", "duplicate_of", "duplicate_kind", "duplicate_similarity",
    "story_id", "story_similarity",
)


def export_articles(connection: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime, path: Path) -> int:
    """Write the articles ingested in [since, until) to a Parquet file (none written when there are none).

    Returns:
        How many rows were written.
    """
    table = connection.sql(
        f"""
        SELECT {", ".join(EXPORT_COLUMNS)} FROM articles
        WHERE (CAST(? AS TIMESTAMPTZ) IS NULL OR ingested_at >= ?) AND ingested_at < ?
        ORDER BY ingested_at, article_id
        """,
        params=[since, since, until],
    ).to_arrow_table()
    if table.num_rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        pq.write_table(table, partial, compression="zstd")
        partial.replace(path)  # a reader never sees half a file
    return table.num_rows
