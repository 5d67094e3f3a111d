"""`newswatch serve` for the benchmarks that run it: set up, start, wait until serving, stop, and find what was left.

Used by `bench/alert_latency.py` and `bench/soak.py`. The service runs in its own session with
its output in `serve.log`; every process it starts is recorded (pid and start time, so a reused
pid is not mistaken for ours) to check that SIGTERM left none behind.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "flows.cli"]


def start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (None when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


class Service:
    """`newswatch serve --interval S` on `db`, after the set-up commands (`add-feed …`, `add-watch …`)."""

    def __init__(self, name: str, db: Path, environment: dict, interval: float, setup: list[list[str]]):
        for step in setup:
            done = subprocess.run([*COMMAND, *step, "--db", str(db)], cwd=ROOT, env=environment, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name}: `newswatch {step[0]}` failed: {done.stderr.strip()[-500:]}")
        self.log_path = db.parent / "serve.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*COMMAND, "serve", "--db", str(db), "--interval", str(interval)],
            cwd=ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.seen: dict[int, str | None] = {}  # every process below the service: pid → start time

    def record_children(self) -> list[int]:
        """The processes below the service now, remembered for `stop`."""
        from flows.service import descendants

        pids = descendants(self.process.pid)
        for pid in pids:
            self.seen.setdefault(pid, start_time(pid))
        return pids

    def wait_until_serving(self, timeout: float) -> float:
        """Seconds from the start until the service says it is serving.

        Raises:
            RuntimeError: It exited, or was not serving within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited at start: {self.log_path.read_text(errors='replace')[-800:]}")
            if "newswatch serving" in self.log_path.read_text(errors="replace"):
                return time.monotonic() - self.started
            time.sleep(0.2)
        raise RuntimeError("the service was not ready in time")

    def stop(self) -> tuple[float, list[int]]:
        """SIGTERM, then wait (SIGKILL to the group after 120 s); kill whatever it left.

        Returns:
            Seconds from SIGTERM to its exit, and the pids of the processes it started that were
            still there a second later (killed now).
        """
        signalled = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        seconds = time.monotonic() - signalled
        self._log.close()
        time.sleep(1)
        left = [pid for pid, started in self.seen.items() if started is not None and start_time(pid) == started]
        return seconds, left
