"""Statements and transactions on DuckDB 2, whose results must be consumed before the next statement."""

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


def execute(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[tuple]:
    """Execute one statement and fetch its whole result (its rows; none for a statement without any)."""
    return connection.execute(sql, parameters or []).fetchall()


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything written inside lands together on exit, or not at all when the block raises."""
    execute(connection, "BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            execute(connection, "ROLLBACK")
        except duckdb.Error:
            pass  # an interrupted connection may refuse it; closing the connection discards the transaction
        raise
    execute(connection, "COMMIT")


def vectors_of(model: str, fallback: str | None = None) -> tuple[str, list]:
    """A subquery of (text_hash, vector) under `model`, else under `fallback` for texts without one, and its parameters.

    Everyday vectors of article leads stand in for whole ones and whole ones for leads, so a
    warehouse that changes how articles are embedded keeps comparing with what it stored.
    """
    if fallback is None or fallback == model:
        return "(SELECT text_hash, vector FROM embeddings WHERE model = ?)", [model]
    return (
        "(SELECT text_hash, vector FROM embeddings WHERE model = ?"
        " UNION ALL SELECT f.text_hash, f.vector FROM embeddings f WHERE f.model = ?"
        " AND NOT EXISTS (SELECT 1 FROM embeddings p WHERE p.model = ? AND p.text_hash = f.text_hash))",
        [model, fallback, model],
    )
