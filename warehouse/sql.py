"""Running a statement on DuckDB 2, whose results must be consumed before the next statement."""

import duckdb


def run(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> list[tuple]:
    """Execute a statement and fetch its whole result."""
    return connection.execute(sql, parameters or []).fetchall()
