"""Is an existing database whole? Asked of DuckDB itself, before anything writes to the file.

DuckDB checks each block's checksum as it reads it and fails on a block the file does not hold,
so the check makes it read what a run relies on, cheaply however large the database:

- the file is opened read-only (its headers and catalog are read);
- every block that DuckDB's storage map (`pragma_storage_info`) places a table's data in lies
  within the file: a truncated file misses the blocks written last;
- every table's first row is read, and every primary and unique key is looked up, which loads
  its index.

The file's size is never compared with DuckDB's block count: that count includes free blocks
that DuckDB need not have written, and a database grown by many small writes often ends before
them.
"""

from pathlib import Path

import duckdb

from warehouse.connection import DEFAULT_MEMORY_LIMIT, DatabaseDamaged, WarehouseError, damage_error, open_warehouse
from warehouse.sql import execute

# DuckDB's file: three 4 KiB headers, then blocks of `block_size` bytes numbered from 0.
_HEADER_BYTES = 3 * 4096


def check_database(path: Path | str, *, memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> None:
    """Raise `DatabaseDamaged` when DuckDB cannot read an existing database; write nothing.

    A file that cannot be opened read-only for another reason (another process writes to it, it
    is no DuckDB file, its schema is older) passes: the read-write open that follows says what
    is wrong, or upgrades it.

    Raises:
        DatabaseDamaged: A block the database needs is missing or fails its checksum.
    """
    path = Path(path)
    if not path.is_file():
        return
    try:
        with open_warehouse(path, read_only=True, memory_limit=memory_limit) as connection:
            try:
                _read_what_runs_rely_on(connection, path)
            except duckdb.Error as error:
                raise damage_error(path, error) from None
    except DatabaseDamaged:
        raise
    except WarehouseError:
        return


def _read_what_runs_rely_on(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    (block_size,) = execute(
        connection, "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
    )[0]
    file_size = path.stat().st_size
    tables = [
        name for (name,) in execute(connection, "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()")
    ]
    for table in tables:
        for (block,) in execute(
            connection,
            "SELECT DISTINCT unnest(list_prepend(block_id, coalesce(additional_block_ids, []))) "
            "FROM pragma_storage_info(?) WHERE persistent AND block_id >= 0",
            [table],
        ):
            end = _HEADER_BYTES + (block + 1) * block_size
            if end > file_size:
                raise DatabaseDamaged(
                    f"database {path} is damaged (truncated?): table {table} has data in block {block}, "
                    f"which ends at byte {end:,} of a {file_size:,}-byte file"
                )
        first = connection.execute(f'SELECT * FROM "{table}" LIMIT 1')
        row, columns = first.fetchone(), [column[0] for column in first.description]
        if row is None:
            continue
        for (key_columns,) in execute(
            connection,
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE database_name = current_database() AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            [table],
        ):
            where = " AND ".join(f'"{column}" = ?' for column in key_columns)
            values = [row[columns.index(column)] for column in key_columns]
            execute(connection, f'SELECT count(*) FROM "{table}" WHERE {where}', values)
