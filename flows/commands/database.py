"""The database a command uses: refused when it is no regular file, checked once before a write, opened with one-line errors."""

from contextlib import contextmanager
from pathlib import Path

from flows.commands.common import fail, reported_errors
from warehouse.connection import open_warehouse, run_lock

_checked_databases: set[Path] = set()


def refuse_special_file(db: Path) -> None:
    """Fail in one line when the database path names a FIFO, socket or device."""
    if db.exists() and not db.is_file() and not db.is_dir():  # DuckDB's open of a FIFO would hang
        fail(f"database path {db} is not a regular file")


def check_database(settings) -> None:
    """Fail in one line when DuckDB finds an existing database damaged, before this command writes to it (once)."""
    from warehouse.integrity import check_database

    refuse_special_file(settings.db)
    if settings.db.resolve() in _checked_databases:
        return
    with reported_errors():
        check_database(settings.db, memory_limit=settings.duckdb_memory_limit)
    _checked_databases.add(settings.db.resolve())


def check_run_can_start(settings) -> None:
    """Fail in one line, before a flow starts, when another run holds the database or it is damaged.

    Inside the flow the same failures would come with Prefect's traceback. The flow takes the run
    lock itself; this only tries it, and only when its file exists, so nothing is created here.
    """
    db = settings.db
    if db.name and db.with_name(db.name + ".run.lock").is_file():  # `run_lock`'s file, made by the first run
        try:
            with reported_errors(), run_lock(db):
                pass
        except OSError as error:
            fail(f"cannot take the run lock of database {db}: {error.strerror or error}")
    check_database(settings)


@contextmanager
def open_database(settings, *, read_only: bool = False):
    """The settings' warehouse, open; one line and exit 2 when it cannot be opened or used, or is damaged."""
    db = settings.db
    refuse_special_file(db)
    if not read_only:
        check_database(settings)
    with reported_errors(), open_warehouse(db, read_only=read_only, memory_limit=settings.duckdb_memory_limit) as connection:
        yield connection
