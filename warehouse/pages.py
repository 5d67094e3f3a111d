"""Stored raw pages and re-extracted texts: what `newswatch reextract` reads and writes."""

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa

from warehouse.load import EmbeddingRow, insert_embeddings
from warehouse.sql import run


@dataclass
class StoredPage:
    """A stored page with the article extracted from it."""

    article_id: str
    final_url: str
    html_zlib: bytes
    title: str | None
    author: str | None
    text_hash: str
    extracted_with: str | None
    is_original: bool


@dataclass
class Extraction:
    """An article's fields as a new extraction of its page gives them."""

    article_id: str
    title: str | None
    text: str
    text_hash: str
    author: str | None
    language: str | None
    site_name: str | None
    image_url: str | None
    extracted_with: str
    terms: dict[str, int]
    is_original: bool


def stored_pages(
    connection: duckdb.DuckDBPyConnection, after: str, limit: int, stale_for: str | None
) -> list[StoredPage]:
    """The next pages in article_id order after `after`.

    Args:
        after: Last article_id already read ("" to start).
        limit: Page count.
        stale_for: Only pages whose text was extracted by something other than this extractor;
            None for every page.
    """
    rows = run(
        connection,
        """
        SELECT p.article_id, p.final_url, p.html_zlib, a.title, a.author, a.text_hash, a.extracted_with,
               a.duplicate_of IS NULL
        FROM pages p JOIN articles a USING (article_id)
        WHERE p.article_id > ? AND (CAST(? AS VARCHAR) IS NULL OR a.extracted_with IS DISTINCT FROM ?)
        ORDER BY p.article_id
        LIMIT ?
        """,
        [after, stale_for, stale_for, limit],
    )
    return [StoredPage(*row[:2], bytes(row[2]), *row[3:]) for row in rows]


def update_extractions(
    connection: duckdb.DuckDBPyConnection, extractions: list[Extraction], embeddings: list[EmbeddingRow]
) -> None:
    """Replace the text, metadata and terms of these articles in one transaction.

    Term document counts follow: an original's old terms are counted out and its new ones in.
    Duplicate links and story assignments are left as they are.
    """
    if not extractions:
        return
    ids = [item.article_id for item in extractions]
    originals = [item.article_id for item in extractions if item.is_original]
    fields = ("article_id", "title", "text", "text_hash", "author", "language", "site_name", "image_url", "extracted_with")
    new_rows = pa.Table.from_pylist([{name: getattr(item, name) for name in fields} for item in extractions])
    new_terms = pa.Table.from_pylist(
        [
            {"article_id": item.article_id, "term": term, "count": count}
            for item in extractions
            for term, count in item.terms.items()
        ],
        schema=pa.schema([("article_id", pa.string()), ("term", pa.string()), ("count", pa.int32())]),
    )
    run(connection, "BEGIN TRANSACTION")
    try:
        connection.register("extracted_rows", new_rows)
        connection.register("extracted_terms", new_terms)
        run(
            connection,
            """
            UPDATE terms SET document_count = terms.document_count - old.n
            FROM (SELECT term, count(*) AS n FROM article_terms WHERE article_id IN (SELECT unnest(?)) GROUP BY term) old
            WHERE terms.term = old.term
            """,
            [originals],
        )
        run(connection, "DELETE FROM article_terms WHERE article_id IN (SELECT unnest(?))", [ids])
        run(connection, "INSERT INTO article_terms BY NAME SELECT * FROM extracted_terms")
        run(
            connection,
            """
            INSERT INTO terms BY NAME
            SELECT term, count(*) AS document_count FROM extracted_terms
            WHERE article_id IN (SELECT unnest(?)) GROUP BY term
            ON CONFLICT (term) DO UPDATE SET document_count = terms.document_count + excluded.document_count
            """,
            [originals],
        )
        run(
            connection,
            f"""
            UPDATE articles SET {", ".join(f"{name} = extracted_rows.{name}" for name in fields[1:])}
            FROM extracted_rows WHERE articles.article_id = extracted_rows.article_id
            """,
        )
        insert_embeddings(connection, embeddings)
        connection.unregister("extracted_rows")
        connection.unregister("extracted_terms")
        run(connection, "COMMIT")
    except Exception:
        run(connection, "ROLLBACK")
        raise
