"""Opening the DuckDB warehouse, with one clear error for every way that can fail."""

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from warehouse.sql import execute

from warehouse.migrations import apply_migrations, schema_version, MIGRATIONS

logger = logging.getLogger(__name__)


class WarehouseError(Exception):
    """The database cannot be opened or used; the message is one sentence for the user."""


DEFAULT_LOCK_WAIT_SECONDS = 30.0


class WarehouseBusy(WarehouseError):
    """Another process kept the file open for longer than the caller would wait."""


class DatabaseDamaged(WarehouseError):
    """DuckDB found the file damaged: a block it needs is missing (truncated) or fails its checksum."""


# What DuckDB says when a block it reads is not there or not what it wrote.
_DAMAGE_MESSAGES = ("could not read enough bytes", "corrupt database file", "does not match stored checksum")


def is_damage_error(error: Exception) -> bool:
    """Whether DuckDB failed because the file is damaged (not locked, not another kind of file)."""
    message = str(error).lower()
    return any(fragment in message for fragment in _DAMAGE_MESSAGES)


def damage_error(path: Path | str, error: Exception) -> DatabaseDamaged:
    """One sentence for a damaged file: what DuckDB could not read, with a hint when the file ends too soon."""
    hint = " (truncated?)" if "could not read enough bytes" in str(error).lower() else ""
    return DatabaseDamaged(f"database {path} is damaged{hint}: {_first_line(error)}")


# DuckDB's buffer manager would otherwise cache up to 80% of the machine's memory while it scans
# (BENCHMARKS.md, "Dedupe and clustering against a growing history"). The setting
# `duckdb_memory_limit` is passed in; None or "" means DuckDB's own default.
DEFAULT_MEMORY_LIMIT = "512MB"


def is_lock_error(error: Exception) -> bool:
    """Whether opening failed only because another process holds the file."""
    message = str(error).lower()
    return "could not set lock" in message or "conflicting lock" in message


def _connect(path: Path, read_only: bool, lock_wait: float, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    """Connect, waiting with backoff while another process holds the file (at most `lock_wait` s)."""
    deadline = time.monotonic() + lock_wait
    delay = 0.05
    config = {"memory_limit": memory_limit} if memory_limit else {}
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as error:
            remaining = deadline - time.monotonic()
            if not is_lock_error(error) or remaining <= 0:
                if is_damage_error(error):
                    raise damage_error(path, error) from None
                if is_lock_error(error):
                    raise WarehouseBusy(
                        f"database {path} is busy: another process kept it open for more than {lock_wait:g} s"
                    ) from None
                raise WarehouseError(f"cannot open database {path}: {_first_line(error)}") from None
            time.sleep(min(delay, remaining))  # the last wait ends at the deadline, then one more try
            delay = min(delay * 2, 1.0)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@contextmanager
def open_warehouse(
    path: Path | str,
    *,
    read_only: bool = False,
    lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS,
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database, bring its schema up to date, and close it on exit.

    Hold the connection only as long as needed: while a process has the file open for writing,
    no other process can open it at all.

    Args:
        path: The DuckDB file; created (with its schema) when missing unless `read_only`.
        read_only: Open without writing; the schema must then already be current.
        lock_wait: Seconds to keep retrying while another process holds the file.
        memory_limit: Memory DuckDB may use for this connection (e.g. "512MB"; None: DuckDB's default).

    Yields:
        A connection.

    Raises:
        WarehouseError: The file is missing (read-only), not a database, locked, or unreadable,
            or its schema is newer or older than this version understands.
    """
    path = Path(path)
    if path.is_dir():
        raise WarehouseError(f"database path {path} is a directory, not a DuckDB file")
    if not path.parent.exists():
        raise WarehouseError(f"cannot create database {path}: folder {path.parent} does not exist")
    if read_only and not path.exists():
        raise WarehouseError(f"database {path} does not exist yet: run `newswatch run` first")
    connection = _connect(path, read_only, lock_wait, memory_limit)
    try:
        execute(connection, "SET TimeZone = 'UTC'")
        version = schema_version(connection)
        latest = MIGRATIONS[-1].version
        if version > latest:
            raise WarehouseError(f"database {path} has schema version {version}, newer than this newswatch ({latest})")
        if read_only and version < latest:
            raise WarehouseError(f"database {path} has schema version {version}; run `newswatch run` to upgrade it to {latest}")
        if not read_only:
            apply_migrations(connection)
        yield connection
    except duckdb.Error as error:
        if is_damage_error(error):
            raise damage_error(path, error) from None
        raise WarehouseError(f"database {path}: {_first_line(error)}") from None
    finally:
        connection.close()


class RunInProgress(WarehouseError):
    """Another run is writing to this database."""


@contextmanager
def run_lock(path: Path | str) -> Iterator[None]:
    """Hold the database's run lock for one whole run, so runs never interleave (fails at once when held).

    DuckDB's own file lock only covers one open connection; runs open the file several times,
    so a run takes this lock (`<db>.run.lock`, released by the OS if the process dies) first.

    Raises:
        RunInProgress: Another process holds it.
    """
    path = Path(path)
    if not path.parent.exists():
        raise WarehouseError(f"cannot create database {path}: folder {path.parent} does not exist")
    lock_file = path.with_name(path.name + ".run.lock")
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgress(f"another run is writing to {path}; try again when it has finished") from None
        yield
    finally:
        os.close(descriptor)
