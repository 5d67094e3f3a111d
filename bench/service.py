"""Start-up time, per-run overhead and idle memory of `newswatch serve` with an empty feed list.

Starts `newswatch serve --interval N` on a fresh database (its own Prefect server on a free
port), waits for `--runs` completed ingest runs, samples the resident memory of the service and
everything it started while idle between runs, then stops it with SIGTERM and times the exit.

Example:
    python bench/service.py --interval 10 --runs 3
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=10, help="seconds between scheduled runs")
    parser.add_argument("--runs", type=int, default=3, help="completed runs to wait for")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from flows.service import descendants
    from warehouse.connection import WarehouseError, open_warehouse
    from warehouse.runs import recent_runs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "service.duckdb"
        environment = {**os.environ, "NEWSWATCH_PREFECT_PORT": str(port), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        environment.pop("PREFECT_API_URL", None)
        started = time.monotonic()
        service = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve", "--db", str(db), "--interval", str(args.interval)],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        ready_line = service.stdout.readline()
        ready_seconds = time.monotonic() - started
        idle_samples, completed = [], []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(completed) < args.runs:
            time.sleep(0.5)
            pids = [service.pid, *descendants(service.pid)]
            try:
                with open_warehouse(db, read_only=True, lock_wait=5) as connection:
                    runs = recent_runs(connection, 100)
            except WarehouseError:
                continue
            completed = [r for r in runs if r.status == "completed"]
            if not any(r.status == "running" for r in runs) and not any(
                "prefect.engine" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") for pid in pids[1:]
                if Path(f"/proc/{pid}/cmdline").exists()
            ):
                idle_samples.append(rss_mib(pids))
        first_run_seconds = (min(r.started_at for r in completed).timestamp() - time.time()) + (time.monotonic() - started) if completed else None
        durations = sorted((r.finished_at - r.started_at).total_seconds() for r in completed)
        gaps = sorted(
            (b.started_at - a.started_at).total_seconds()
            for a, b in zip(sorted(completed, key=lambda r: r.started_at), sorted(completed, key=lambda r: r.started_at)[1:])
        )
        stop_started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        service.wait(120)
        stop_seconds = time.monotonic() - stop_started
    result = {
        "ready_line": ready_line.strip()[:120],
        "ready_seconds": round(ready_seconds, 1),
        "first_run_started_after_seconds": round(first_run_seconds, 1) if first_run_seconds else None,
        "completed_runs": len(completed),
        "run_seconds_in_flow_median": round(durations[len(durations) // 2], 2) if durations else None,
        "seconds_between_run_starts": [round(gap, 1) for gap in gaps],
        "idle_rss_mib_median": round(sorted(idle_samples)[len(idle_samples) // 2]) if idle_samples else None,
        "idle_rss_mib_max": round(max(idle_samples)) if idle_samples else None,
        "stop_seconds": round(stop_seconds, 1),
        "exit_code": service.returncode,
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:34} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
