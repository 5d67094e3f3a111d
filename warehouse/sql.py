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
