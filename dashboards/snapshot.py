"""How the dashboard reads the warehouse: short read-only connections, brief caching, "data as of".

DuckDB lets one process write a file, and while any process holds the file no other can open it
for writing. So every read here opens the database read-only, fetches everything a page needs
through named queries, and closes it at once; the pipeline's writer waits for such a read (and a
read waits for the writer) instead of failing. Results are cached for `CACHE_SECONDS`, and each
page says how old its data is. When a writer keeps the file longer than the dashboard waits, the
last good data is shown with a note; a user never sees a lock error or a traceback.
"""

import argparse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FunctionType
from typing import Any

import duckdb
import streamlit as st
from pydantic import ValidationError

from dashboards.plain_text import plain
from flows.settings import Settings, load_settings, settings_error_message
from warehouse.connection import DEFAULT_MEMORY_LIMIT, WarehouseBusy, WarehouseError, open_warehouse

CACHE_SECONDS = 30
# A page waits less for a run holding the file than a command does (warehouse.connection.DEFAULT_LOCK_WAIT_SECONDS,
# 30 s): a reader looking at the screen gets the last good answer sooner.
PAGE_LOCK_WAIT_SECONDS = 10.0
LAST_GOOD_ENTRIES = 64


@dataclass(frozen=True)
class Source:
    """The database the dashboard reads, how long a read waits for a writer to finish, and DuckDB's memory limit.

    `settings_error` says why the settings could not be read (then the defaults stand in, and
    every read shows the error instead of data).
    """

    path: Path
    lock_wait: float = PAGE_LOCK_WAIT_SECONDS
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT
    settings_error: str | None = None


# Session-state key of what the app's script read for this run: (argv, source, settings).
_READ_THIS_RUN = "newswatch_arguments"


def source_from_arguments(argv: list[str]) -> Source:
    """The source from `--db` (else the settings: `NEWSWATCH_DB`, else `newswatch.duckdb`) and `--lock-wait`."""
    return read_arguments(argv)[0]


def read_once_per_run(argv: list[str]) -> Source:
    """The source, with the settings read once for this run of the app: the page it runs takes both (`page_arguments`)."""
    source, settings = read_arguments(argv)
    st.session_state[_READ_THIS_RUN] = (list(argv), source, settings)
    return source


def page_arguments(argv: list[str]) -> tuple[Source, Settings]:
    """The source and settings the app read for this run (`read_once_per_run`); read now when a page runs alone."""
    kept = st.session_state.get(_READ_THIS_RUN)
    if kept is not None and kept[0] == list(argv):
        return kept[1], kept[2]
    return read_arguments(argv)


def read_arguments(argv: list[str]) -> tuple[Source, Settings]:
    """The source (`source_from_arguments`) and the settings it comes from.

    When the settings cannot be read the defaults stand in, and `source.settings_error` says why.
    """
    parser = argparse.ArgumentParser(prog="dashboards/app.py", allow_abbrev=False)
    parser.add_argument("--db", default=None, help="DuckDB file to read (default: the setting NEWSWATCH_DB)")
    parser.add_argument("--lock-wait", help="seconds a read waits while the pipeline holds the database")
    # parse_known_args: under AppTest or other runners sys.argv belongs to someone else.
    arguments, _ = parser.parse_known_args(argv)
    try:
        lock_wait = max(0.0, float(arguments.lock_wait))
    except (TypeError, ValueError):  # absent or not a number: the default, not a crashed page
        lock_wait = PAGE_LOCK_WAIT_SECONDS
    try:
        settings = load_settings(db=arguments.db)
    except ValidationError as error:
        defaults = Settings.model_construct()
        source = Source(Path(arguments.db or defaults.db), lock_wait, defaults.duckdb_memory_limit, settings_error_message(error))
        return source, defaults
    return Source(settings.db, lock_wait, settings.duckdb_memory_limit), settings


@dataclass(frozen=True)
class Snapshot:
    """What one read returned, and when it was read."""

    read_at: datetime
    data: Any


def read_snapshot(source: Source, reader: Callable[..., Any], *arguments) -> Snapshot:
    """Run `reader(connection, *arguments)` in one short read-only connection, then close it.

    Args:
        source: The database and how long to wait for a writer.
        reader: A function of a connection that fetches everything it needs through named queries.
        *arguments: Its further arguments.

    Returns:
        The reader's result with the time it was read.

    Raises:
        WarehouseError: The database is missing, busy for longer than `source.lock_wait`, not a
            database, of another schema version, or a query failed.
    """
    with open_warehouse(source.path, read_only=True, lock_wait=source.lock_wait, memory_limit=source.memory_limit) as connection:
        try:
            data = reader(connection, *arguments)
        except duckdb.Error as error:
            raise WarehouseError(f"database {source.path}: {str(error).strip().splitlines()[0]}") from None
    return Snapshot(datetime.now(UTC), data)


def _function_name(function: FunctionType) -> str:
    return f"{function.__module__}.{function.__qualname__}"


# Readers are hashed by name: their code lives in importable modules, not in the page scripts.
@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256, hash_funcs={FunctionType: _function_name})
def _cached_snapshot(source: Source, reader: Callable[..., Any], arguments: tuple) -> Snapshot:
    return read_snapshot(source, reader, *arguments)


# The last successful read of each (database, reader, arguments), shown while a writer holds the file.
_last_good: OrderedDict[tuple, Snapshot] = OrderedDict()


def refresh() -> None:
    """Forget cached reads so that the next read goes to the database."""
    _cached_snapshot.clear()


def is_busy(error: WarehouseError) -> bool:
    """Whether a read failed only because another process kept the database open too long."""
    return isinstance(error, WarehouseBusy)


def format_time(moment: datetime | None, seconds: bool = False, zone: bool = True) -> str:
    """A timestamp in UTC ("UTC" left out with `zone=False`, for tables that say so), or a dash."""
    if moment is None:
        return "—"
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} UTC" if zone else text


def count(number: int, noun: str) -> str:
    """"1 story", "3 stories", "2 articles"."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1]}ies" if noun.endswith("y") and noun[-2:] not in ("ay", "ey", "oy") else f"{number} {noun}s"


def missing_database_message(path: Path) -> str:
    """What to tell a user whose database file does not exist."""
    return f"No database at {plain(str(path))} yet: run `newswatch run --fixtures DIR` or `newswatch run` first."


def load(source: Source, reader: Callable[..., Any], *arguments, primary: bool = True) -> Any | None:
    """Read through `reader` (cached briefly) and say how old the data is, or why there is none.

    On success a primary read writes "data as of <time>" and returns the data. Otherwise one
    clear message is written and None returned: an info for a missing file, a warning while a
    writer holds the database, an error for a file that is not a usable database. While a
    writer holds the database, the last good data of this read is returned instead when there
    is some, with a notice saying how old it is.

    Args:
        source: The database.
        reader: A function of a connection and `arguments`, hashed by its qualified name.
        *arguments: Hashable arguments of the reader.
        primary: The read a page's "data as of" refers to. A secondary read (a page's filter
            options) writes no caption and returns its last good data without a notice of its own.
    """
    if source.settings_error:
        st.error(plain(source.settings_error))
        return None
    if not source.path.exists():
        st.info(missing_database_message(source.path))
        return None
    key = (str(source.path), _function_name(reader), arguments)
    try:
        snapshot = _cached_snapshot(source, reader, arguments)
    except WarehouseError as error:
        if not is_busy(error):
            st.error(plain(str(error)))  # it names the file and quotes DuckDB, which may quote the file
            return None
        stale = _last_good.get(key)
        if stale is None:
            st.warning(
                "The pipeline is writing to the database right now; this page will show its data "
                "as soon as the run has finished. Refresh in a few seconds."
            )
            return None
        if primary:
            st.warning(
                f"The pipeline is writing to the database right now: showing data as of "
                f"{format_time(stale.read_at, seconds=True)}. Refresh in a few seconds for newer data."
            )
        return stale.data
    _last_good[key] = snapshot
    _last_good.move_to_end(key)
    while len(_last_good) > LAST_GOOD_ENTRIES:
        _last_good.popitem(last=False)
    if primary:
        st.caption(f"data as of {format_time(snapshot.read_at, seconds=True)}")
    return snapshot.data

