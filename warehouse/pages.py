"""Stored raw pages and re-extracted texts: what `newswatch reextract` reads and writes."""

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from warehouse.load import EmbeddingRow, add_document_counts, insert_embeddings, term_table
from warehouse.sql import execute, transaction


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
    rows = execute(
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
    new_terms = term_table({item.article_id: item.terms for item in extractions})
    with transaction(connection):
        connection.register("extracted_rows", new_rows)
        connection.register("extracted_terms", new_terms)
        execute(
            connection,
            """
            UPDATE terms SET document_count = terms.document_count - old.n
            FROM (SELECT term, count(*) AS n FROM article_terms WHERE article_id IN (SELECT unnest(?)) GROUP BY term) old
            WHERE terms.term = old.term
            """,
            [originals],
        )
        execute(connection, "DELETE FROM article_terms WHERE article_id IN (SELECT unnest(?))", [ids])
        execute(connection, "INSERT INTO article_terms BY NAME SELECT * FROM extracted_terms")
        add_document_counts(connection, "extracted_terms", originals)
        execute(
            connection,
            f"""
            UPDATE articles SET {", ".join(f"{name} = extracted_rows.{name}" for name in fields[1:])}
            FROM extracted_rows WHERE articles.article_id = extracted_rows.article_id
            """,
        )
        insert_embeddings(connection, embeddings)
        connection.unregister("extracted_rows")
        connection.unregister("extracted_terms")
