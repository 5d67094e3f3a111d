"""The processes a run starts end with it, and a stopped run ends within seconds.

- Children die with their parent: the extraction workers, Prefect's temporary API server and
  the server `serve` starts get a parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`), so even
  a run killed with SIGKILL leaves nothing behind.
- A run stopped by a signal gets a few seconds to record how it ended (Prefect reports it to its
  API); when that cannot finish, e.g. because the API server was stopped by the same signal, the
  process stops its children and exits anyway (`exit_within`, `stop_now`).
"""

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NoReturn

_PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a function run between fork and exec must not import
    _PRCTL = _LIBC.prctl
except (OSError, AttributeError):  # not Linux: children are stopped on the way out only
    _PRCTL = None


def set_parent_death_signal(parent: int, signum: int = signal.SIGTERM) -> None:
    """In a child process: receive `signum` when the parent dies (and exit now if it already has)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def die_with_this_process():
    """A `preexec_fn` for subprocesses that must end when this process does."""
    return partial(set_parent_death_signal, os.getpid())


TEMPORARY_SERVER_LOG = "temporary-server.log"


def _temporary_server_log():
    """The file the temporary server writes its errors to (in PREFECT_HOME), open for appending; None if it cannot be."""
    from prefect.settings import get_current_settings

    try:
        home = Path(get_current_settings().home)
        home.mkdir(parents=True, exist_ok=True)
        return open(home / TEMPORARY_SERVER_LOG, "ab")  # noqa: SIM115 - the child holds its own copy; ours is closed at once
    except OSError:
        return None


class _SubprocessDyingWithParent:
    """The `subprocess` module as Prefect's temporary server sees it: its process dies with ours, and its
    errors go to a log file, not to the user's terminal (stopping it can print a traceback of a cancelled
    database call that says nothing about the run)."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args, **kwargs):  # noqa: N802 - the name Prefect calls
        kwargs.setdefault("preexec_fn", die_with_this_process())
        log = None if "stderr" in kwargs else _temporary_server_log()
        if log is not None:
            kwargs["stderr"] = log
        try:
            return subprocess.Popen(*args, **kwargs)
        finally:
            if log is not None:
                log.close()


def temporary_server_dies_with_this_process() -> None:
    """Make Prefect's temporary API server (started per process without PREFECT_API_URL) end with this process.

    Prefect stops it at a normal exit, but not when the process is killed; with a parent-death
    signal the server (about 220 MB) never outlives the run.
    """
    from prefect.server.api import server

    if not isinstance(server.subprocess, _SubprocessDyingWithParent):
        server.subprocess = _SubprocessDyingWithParent()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def stop_descendants(grace_seconds: float = 15.0) -> None:
    """Terminate the processes this process started, then kill any that linger."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        pids = descendants(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
            time.sleep(0.1)
        if not pids:
            return


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    return False


def stop_now(code: int, message: str | None = None) -> NoReturn:
    """Stop every process this one started and exit with `code` at once (no interpreter teardown)."""
    if message:
        try:
            os.write(2, f"newswatch: {message}\n".encode())
        except OSError:
            pass
    stop_descendants(grace_seconds=2.0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not keep the process alive
            pass
    os._exit(code)


_exit_timer: threading.Timer | None = None


def exit_within(seconds: float, code: int, message: str | None = None) -> None:
    """Make sure this process ends within `seconds` (with `code`), whatever it is waiting for."""
    global _exit_timer
    if _exit_timer is None:
        _exit_timer = threading.Timer(seconds, stop_now, args=(code, message))
        _exit_timer.daemon = True
        _exit_timer.start()


_stop_signal: int | None = None


def stop_signal() -> int | None:
    """The signal (SIGTERM or SIGINT) that stopped the run in this process, if one did."""
    return _stop_signal


@contextmanager
def noting_stop_signals():
    """While a run works (main thread): remember a SIGTERM or SIGINT, then handle it as before.

    The handler in place (Prefect's, which raises `TerminationSignal`; Python's `KeyboardInterrupt`)
    raises inside whatever the run was doing, and a library may turn that into an error of its
    own (DuckDB raises "Query interrupted"); the run must still count as stopped, not failed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def note(signum, frame) -> None:
        global _stop_signal
        _stop_signal = signum
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in previous:
        signal.signal(signum, note)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is note:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def exit_code_of(stop: BaseException) -> int:
    """The exit status of a process stopped by this exception: 128 + the signal's number."""
    signum = getattr(stop, "signal", None) or _stop_signal
    if isinstance(signum, int):
        return 128 + signum
    return 128 + signal.SIGINT if isinstance(stop, KeyboardInterrupt) else 1


STOP_GRACE_SECONDS = 5.0  # how long a stopped run may take to report it before its process ends
_end_when_stopped = False


def run_stopped(stop: BaseException, message: str) -> None:
    """A run was stopped (SIGTERM, Ctrl+C): in a command set up by `stop_on_signals`, end within the grace.

    Prefect reports the stop to its API before the process ends; when the same signal stopped
    that server too, it would retry for minutes. What the run committed is safe either way.
    Elsewhere (a library call, a test) nothing more happens: the exception goes on as usual.
    """
    if _end_when_stopped:
        exit_within(STOP_GRACE_SECONDS, exit_code_of(stop), message)


def stop_on_signals(message: str) -> None:
    """In a command's main thread: SIGTERM ends the process at once (children too) after one line on stderr.

    While a flow runs, Prefect's own SIGTERM handler takes over: the run records that it was
    stopped, and the process ends through this handler once Prefect has reported it, or after
    `STOP_GRACE_SECONDS` (`run_stopped`). SIGHUP (the terminal went away) stops it like Ctrl+C.
    """
    global _end_when_stopped
    _end_when_stopped = True

    def stop(signum, frame) -> None:
        stop_now(128 + signum, f"stopped by {signal.Signals(signum).name}; {message}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, signal.default_int_handler)


@contextmanager
def exit_without_interpreter_teardown():
    """Around a command's whole run: once it is done, exit with its status without Python's teardown.

    Call it before Prefect is imported: its exit handler then runs after Prefect's own (whose
    temporary server is stopped by then). Skipping interpreter teardown keeps DuckDB's bindings
    from printing reference-leak reports about objects Prefect's worker threads still hold.
    """
    import atexit

    status = {"code": 0}

    def leave_quietly() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status["code"])

    atexit.register(leave_quietly)
    try:
        yield
    except SystemExit as exit_:
        status["code"] = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        raise
    except BaseException:
        status["code"] = 1
        raise
