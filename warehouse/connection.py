"""Opening the DuckDB warehouse, with one clear error for every way that can fail."""

import fcntl
import logging
import os
import threading
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
    """Connect, waiting with backoff while another process holds the file (at most `lock_wait` s).

    A writer that has to wait says so (`writer_waiting`), so that readers sharing the file for long
    (`WarehouseReader`) let it in rather than keep it open under a steady stream of requests.
    """
    deadline = time.monotonic() + lock_wait
    delay = 0.05
    config = {"memory_limit": memory_limit} if memory_limit else {}
    waiting = None
    try:
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only, config=config)
            except duckdb.Error as error:
                remaining = deadline - time.monotonic()
                if not is_lock_error(error) or remaining <= 0:
                    raise _open_error(path, error, lock_wait) from None
                if not read_only and waiting is None:
                    waiting = _flag_waiting_writer(path)
                time.sleep(min(delay, remaining))  # the last wait ends at the deadline, then one more try
                delay = min(delay * 2, 1.0)
    finally:
        if waiting is not None:
            os.close(waiting)  # releases the flag


def _open_error(path: Path, error: duckdb.Error, lock_wait: float) -> WarehouseError:
    """The one-sentence error for a file that could not be opened (damaged, held by another process, or else)."""
    if is_damage_error(error):
        return damage_error(path, error)
    if is_lock_error(error):
        return WarehouseBusy(f"database {path} is busy: another process kept it open for more than {lock_wait:g} s")
    return WarehouseError(f"cannot open database {path}: {_first_line(error)}")


def _waiting_flag(path: Path) -> Path:
    return path.with_name(path.name + ".writer-waiting.lock")


def _flag_waiting_writer(path: Path) -> int | None:
    """Take the flag that a writer waits for the file (an exclusive lock, held until it is in or gives up).

    Returns the descriptor to close, or None when the flag cannot be taken now: another waiting
    writer or a reader checking it holds it (tried again at the next wait), or the folder takes no
    new file (readers are then not told, and the writer waits as it always did).
    """
    try:
        descriptor = os.open(_waiting_flag(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def writer_waiting(path: Path | str) -> bool:
    """Whether a process waits to open the database for writing (see `_connect`)."""
    try:
        descriptor = os.open(_waiting_flag(Path(path)), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(descriptor)  # and with it the shared lock, at once
    return False


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
        read_only: Open without writing; the schema must then already be current. In a process
            that shares its reads of the file (`share_reads`), the read goes through that reader.
        lock_wait: Seconds to keep retrying while another process holds the file.
        memory_limit: Memory DuckDB may use for this connection (e.g. "512MB"; None: DuckDB's default;
            a shared reader keeps its own).

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
    shared = _shared_readers.get(path.resolve()) if read_only else None
    if shared is not None:
        with shared.read(lock_wait) as connection:
            yield connection
        return
    connection = _connect(path, read_only, lock_wait, memory_limit)
    try:
        execute(connection, "SET TimeZone = 'UTC'")
        version = schema_version(connection)
        latest = MIGRATIONS[-1].version
        if version > latest:
            raise WarehouseError(f"database {path} has schema version {version}, newer than this newswatch ({latest})")
        if read_only and version < latest:
            raise WarehouseError(f"database {path} has schema version {version}; run `newswatch run` to upgrade it to {latest}")
        if not read_only and version < latest:  # a current schema needs nothing written
            apply_migrations(connection)
        yield connection
    except duckdb.Error as error:
        if is_damage_error(error):
            raise damage_error(path, error) from None
        raise WarehouseError(f"database {path}: {_first_line(error)}") from None
    finally:
        connection.close()


class WarehouseReader:
    """Short read-only reads of one warehouse from a long-running process (the HTTP API), through one DuckDB instance.

    `open_warehouse` starts a DuckDB instance for every connection, which costs 20-40 ms (it
    registers every built-in function): more than most reads a request makes. A reader keeps one
    in-memory instance for the process and attaches the file to it, read-only, while reads are in
    progress and for `LINGER_SECONDS` after the last one. Reads that overlap share the attachment;
    while a writer waits for the file (`writer_waiting`), no read starts and none lingers, so the
    ones in progress finish, the file is let go and the writer gets in, however steady the stream
    of requests. At most `READS_AT_ONCE` reads run
    at once (a read inside another one of the same thread takes no other turn); the others wait
    for their turn without holding the file.
    """

    ALIAS = "warehouse"
    # More reads at once than cores go no faster, and they all share the instance's one memory
    # limit: over 1,000,000 articles, twenty at once ran out of 512MB now and then, and four at
    # once still did (14 of 1,545 pages of stories under 20 clients).
    READS_AT_ONCE = 2
    # After the last read the file stays attached this long, unless a writer waits for it: the
    # blocks DuckDB read stay in its cache, and reads over 1,000,000 articles took half the time.
    LINGER_SECONDS = 0.5

    def __init__(self, path: Path | str, memory_limit: str | None = DEFAULT_MEMORY_LIMIT):
        self.path = Path(path)
        self.memory_limit = memory_limit
        self._lock = threading.Lock()
        self._instance: duckdb.DuckDBPyConnection | None = None
        self._readers = 0
        self._turns = threading.BoundedSemaphore(self.READS_AT_ONCE)
        self._depth = threading.local()  # reads in progress in this thread
        self._attached = False
        self._idle_since = 0.0
        self._detacher: threading.Thread | None = None

    @contextmanager
    def read(self, lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the warehouse, as `open_warehouse(path, read_only=True)` gives.

        Args:
            lock_wait: Seconds to keep retrying while a writer holds the file or waits for it.

        Yields:
            A connection (a cursor of the shared instance); close nothing.

        Raises:
            WarehouseError: As `open_warehouse` raises it (`WarehouseBusy` after `lock_wait`).
        """
        depth = getattr(self._depth, "value", 0)
        if not depth:
            self._turns.acquire()
        self._depth.value = depth + 1
        try:
            self._enter(lock_wait)
            try:
                with self._lock:
                    cursor = self._instance.cursor()
                try:
                    execute(cursor, f"USE {self.ALIAS}")
                    execute(cursor, "SET TimeZone = 'UTC'")
                    yield cursor
                finally:
                    cursor.close()
            except duckdb.Error as error:
                if is_damage_error(error):
                    raise damage_error(self.path, error) from None
                raise WarehouseError(f"database {self.path}: {_first_line(error)}") from None
            finally:
                self._leave()
        finally:
            self._depth.value = depth
            if not depth:
                self._turns.release()

    def _enter(self, lock_wait: float) -> None:
        """Count one more read, attaching the file first when none is in progress; waits as `_connect` does."""
        if self.path.is_dir():
            raise WarehouseError(f"database path {self.path} is a directory, not a DuckDB file")
        deadline = time.monotonic() + lock_wait
        delay = 0.05
        while True:
            failure = None
            with self._lock:
                if not writer_waiting(self.path):
                    if self._attached:
                        self._readers += 1
                        return
                    if not self.path.exists():
                        raise WarehouseError(f"database {self.path} does not exist yet: run `newswatch run` first")
                    try:
                        self._attach()
                        self._attached, self._readers = True, 1
                        return
                    except duckdb.Error as error:
                        if not is_lock_error(error):
                            raise _open_error(self.path, error, lock_wait) from None
                        failure = error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if failure is not None:
                    raise _open_error(self.path, failure, lock_wait)
                raise WarehouseBusy(
                    f"database {self.path} is busy: a writer held it or waited for it for more than {lock_wait:g} s"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    def _attach(self) -> None:
        """Attach the file read-only (under the lock) and check its schema version, as `open_warehouse` does."""
        if self._instance is None:
            config = {"memory_limit": self.memory_limit} if self.memory_limit else {}
            # Where a read of the file itself would spill (DuckDB's default for it), not the working folder.
            self._instance = duckdb.connect(":memory:", config={**config, "temp_directory": f"{self.path}.tmp"})
        quoted = "'" + str(self.path).replace("'", "''") + "'"
        execute(self._instance, f"ATTACH {quoted} AS {self.ALIAS} (READ_ONLY)")
        try:
            cursor = self._instance.cursor()
            try:
                execute(cursor, f"USE {self.ALIAS}")
                version = schema_version(cursor)
            finally:
                cursor.close()
            latest = MIGRATIONS[-1].version
            if version > latest:
                raise WarehouseError(f"database {self.path} has schema version {version}, newer than this newswatch ({latest})")
            if version < latest:
                raise WarehouseError(
                    f"database {self.path} has schema version {version}; run `newswatch run` to upgrade it to {latest}"
                )
        except BaseException:
            execute(self._instance, f"DETACH {self.ALIAS}")
            raise

    def _leave(self) -> None:
        with self._lock:
            self._readers -= 1
            if self._readers == 0:
                self._idle_since = time.monotonic()
                if self._detacher is None:
                    self._detacher = threading.Thread(target=self._detach_when_idle, name="warehouse-reader", daemon=True)
                    self._detacher.start()

    def _detach_when_idle(self) -> None:
        """Detach the file once no read has used it for `LINGER_SECONDS`, or at once when a writer waits for it."""
        while True:
            time.sleep(0.02)
            with self._lock:
                if self._readers or not self._attached:
                    self._detacher = None  # the next read to finish starts another one
                    return
                if time.monotonic() - self._idle_since >= self.LINGER_SECONDS or writer_waiting(self.path):
                    self._detach()
                    self._detacher = None
                    return

    def _detach(self) -> None:
        """Let the file go (under the lock, with no read in progress)."""
        self._attached = False
        try:
            execute(self._instance, f"DETACH {self.ALIAS}")
        except duckdb.Error as error:  # closing the instance lets the file go all the same
            logger.warning("could not detach %s (%s); closing its reader", self.path, _first_line(error))
            self._instance.close()
            self._instance = None

    def close(self) -> None:
        """Let the file go and close the instance (reads in progress fail)."""
        with self._lock:
            if self._instance is not None:
                self._instance.close()
                self._instance = None
            self._attached, self._readers = False, 0


_shared_readers: dict[Path, WarehouseReader] = {}
_shared_readers_lock = threading.Lock()


def share_reads(path: Path | str, memory_limit: str | None = DEFAULT_MEMORY_LIMIT) -> WarehouseReader:
    """From now on, every read-only `open_warehouse` of this file in this process goes through one `WarehouseReader`.

    For long-running readers that serve many short reads (the HTTP API). All of the process's
    reads of the file must then share it: DuckDB's file locks belong to the process, so another
    instance closing the same file would release the reader's lock too, and let a writer in while
    it reads.

    Returns:
        The process's reader of that file (the one made first, when asked again).
    """
    key = Path(path).resolve()
    with _shared_readers_lock:
        if key not in _shared_readers:
            _shared_readers[key] = WarehouseReader(path, memory_limit)
        return _shared_readers[key]


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
