"""Exports for tools that read files rather than the database: Parquet of new rows (maintenance), and
article listings as CSV, JSON Lines or Parquet (`newswatch export`, the API's `/export`)."""

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.queries import _SEEN_AT, _SOURCE_NAME

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


ARTICLE_EXPORT_COLUMNS = (
    "article_id", "story_id", "story_headline", "title", "url", "canonical_url", "source_name", "feed_id", "language",
    "author", "published_at", "ingested_at", "seen_at", "duplicate_of", "duplicate_kind", "duplicate_similarity",
    "story_similarity",
)
EXPORT_FORMATS = ("csv", "jsonl", "parquet")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def article_export_table(
    connection: duckdb.DuckDBPyConnection,
    *,
    since: datetime | None = None,
    article_ids: list[str] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The articles with their story, duplicate link, source, language and dates, oldest seen first.

    Args:
        connection: An open warehouse connection.
        since: Only articles seen (published, else ingested) at or after this time.
        article_ids: Only these articles (those a query matched).
        limit: At most this many (None: all).

    Returns:
        A table of the columns `ARTICLE_EXPORT_COLUMNS`; `source_name` is who published the article
        (as everywhere: the site's name, else the feed's, else the host, else where it came from).
    """
    return connection.sql(
        f"""
        SELECT a.article_id, a.story_id, s.headline AS story_headline, a.title, a.url, a.canonical_url,
               {_SOURCE_NAME} AS source_name, a.feed_id, a.language, a.author, a.published_at, a.ingested_at,
               {_SEEN_AT} AS seen_at, a.duplicate_of, a.duplicate_kind, a.duplicate_similarity, a.story_similarity
        FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id JOIN stories s ON s.story_id = a.story_id
        WHERE (?::TIMESTAMPTZ IS NULL OR {_SEEN_AT} >= ?::TIMESTAMPTZ)
          AND (?::VARCHAR[] IS NULL OR a.article_id IN (SELECT unnest(?::VARCHAR[])))
        ORDER BY seen_at, a.article_id
        LIMIT ?
        """,
        params=[since, since, article_ids, article_ids, limit],
    ).to_arrow_table()


def _text_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def write_article_export(table: pa.Table, format: str, target: BinaryIO) -> None:
    """Write an `article_export_table` as CSV (a header row), JSON Lines or Parquet (zstd) to a binary file.

    Times are ISO 8601 with their zone (UTC) in CSV and JSON Lines, TIMESTAMPTZ in Parquet; a
    missing value is an empty CSV field and `null` in JSON.

    Raises:
        ValueError: An unknown format.
    """
    if format == "parquet":
        pq.write_table(table, target, compression="zstd")
        return
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    text = io.TextIOWrapper(target, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text) if format == "csv" else None
        if writer is not None:
            writer.writerow(table.column_names)
        for batch in table.to_batches(max_chunksize=5000):
            for row in batch.to_pylist():
                if writer is not None:
                    writer.writerow(["" if value is None else _text_value(value) for value in row.values()])
                else:
                    text.write(json.dumps({key: _text_value(value) for key, value in row.items()}, ensure_ascii=False) + "\n")
        text.flush()
    finally:
        text.detach()  # leave `target` open for the caller
