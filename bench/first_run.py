"""A user's first run over a big feed list: time, articles/s, memory, and what a run killed halfway keeps.

A local site on 127.0.0.1 serves `--feeds` RSS feeds of `--entries` new entries each. With
`--mode feed-text` (`NEWSWATCH_FETCH_PAGES=0`) the entries carry their own text: automated items
that read alike except for names and numbers (earnings, match results, weather; see
`bench/batch_scale.py`), the hardest case for dedupe and clustering. With `--mode pages` each
entry links to a real article page (the A1 pages of `--data`, replicated with a unique sentence)
that is fetched and extracted.

The real command runs three times, each as `newswatch run` in a session of its own (Prefect's
temporary server included), on a fresh warehouse unless said otherwise:

1. a whole run: wall time, articles stored, articles/s, peak memory of the run's processes;
2. the same run killed with SIGKILL at half the time of the first (or after `--kill-after`
   seconds, skipping the first): articles stored, run status;
3. the next run on that killed warehouse: time to complete it, and whether every entry is
   stored exactly once.

Example:
    python bench/first_run.py --mode feed-text --feeds 200 --entries 100
    python bench/first_run.py --mode pages --data ../shared/eval/A1_scrapinghub_aeb/dev --feeds 200 --entries 10
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from batch_scale import templated_texts  # noqa: E402 (a sibling script module)
from local_site import LocalSite  # noqa: E402
from throughput import replicate  # noqa: E402

NEWSWATCH = str(Path(sys.executable).with_name("newswatch"))


class FeedTextSite(LocalSite):
    """Feeds whose entries carry their own text (a description), dated a minute apart."""

    def __init__(self, texts: dict[str, str], feeds: int):
        super().__init__({key: b"" for key in texts}, feeds)
        self.texts = texts
        self.start = datetime(2026, 11, 30, tzinfo=UTC)

    def feed(self, index: int) -> bytes:
        items = "".join(
            f"<item><title>{escape(self.texts[key][:70])}</title><link>{self.base_url}/page/{key}</link>"
            f"<pubDate>{(self.start + timedelta(minutes=int(key))).strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
            f"<description>{escape(self.texts[key])}</description></item>"
            for key in self.feed_keys[index]
        )
        return f"<?xml version='1.0'?><rss version='2.0'><channel><title>feed {index}</title>{items}</channel></rss>".encode()


def session_memory(pid: int, stop: threading.Event, peaks: dict) -> None:
    """Sample the resident memory of the run's session: its largest process and the sum of all."""
    while not stop.wait(0.5):
        total = 0
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) != pid:
                    continue
                status = (entry / "status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    total += rss
                    peaks["largest_process_mib"] = max(peaks.get("largest_process_mib", 0), round(rss))
        peaks["all_processes_mib"] = max(peaks.get("all_processes_mib", 0), round(total))


def run(db: Path, environment: dict, kill_after: float | None = None) -> dict:
    """`newswatch run` on `db`; killed with SIGKILL after `kill_after` seconds when given."""
    started = time.monotonic()
    process = subprocess.Popen(
        [NEWSWATCH, "run", "--db", str(db)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    stop, peaks = threading.Event(), {}
    sampler = threading.Thread(target=session_memory, args=(process.pid, stop, peaks), daemon=True)
    sampler.start()
    try:
        code = process.wait(kill_after)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    seconds = time.monotonic() - started
    stop.set()
    time.sleep(3)  # children die with the run: give them a moment, then check
    left = [p.name for p in Path("/proc").glob("[0-9]*") if _session_of(p) == process.pid]
    reader.join(5)
    connection = duckdb.connect(str(db), read_only=True)
    try:
        stored, urls = connection.execute("SELECT count(*), count(DISTINCT url) FROM articles").fetchone()
        statuses = [row[0] for row in connection.execute("SELECT status FROM runs ORDER BY started_at").fetchall()]
    finally:
        connection.close()
    result = {
        "exit": code, "seconds": round(seconds, 1), "stored": stored, "distinct_urls": stored == urls,
        "articles_per_s": round(stored / seconds, 2) if seconds else None, "runs": statuses,
        "processes_left": len(left), **peaks,
    }
    if code not in (0, -signal.SIGKILL):
        result["stderr"] = "".join(stderr)[-1500:]
    return result


def _session_of(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["feed-text", "pages"], default="feed-text")
    parser.add_argument("--data", type=Path, help="for --mode pages: a folder holding html/*.html pages")
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=100, help="new entries per feed")
    parser.add_argument("--batch-size", type=int, help="NEWSWATCH_BATCH_SIZE (default: the setting's default)")
    parser.add_argument("--kill-after", type=float, help="skip the whole run: kill the second run after this many seconds")
    args = parser.parse_args(argv)
    count = args.feeds * args.entries
    if args.mode == "pages":
        if args.data is None:
            parser.error("--mode pages needs --data")
        folder = args.data / "html" if (args.data / "html").is_dir() else args.data
        site = LocalSite(replicate(folder, count), args.feeds)
    else:
        site = FeedTextSite({f"{index:06d}": text for index, text in enumerate(templated_texts(count))}, args.feeds)
    environment = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1",
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1", "NEWSWATCH_RESPECT_ROBOTS": "0",
        # One loopback host stands for the many hosts of real feeds: no politeness delay.
        "NEWSWATCH_FETCH_HOST_DELAY": "0", "NEWSWATCH_FETCH_HOST_CONCURRENCY": "16", "NEWSWATCH_FETCH_CONCURRENCY": "32",
        "NEWSWATCH_FETCH_PAGES": "1" if args.mode == "pages" else "0",
    }
    if args.batch_size:
        environment["NEWSWATCH_BATCH_SIZE"] = str(args.batch_size)
    results = {"mode": args.mode, "feeds": args.feeds, "entries": count}
    with site, tempfile.TemporaryDirectory() as scratch:
        from warehouse.connection import open_warehouse
        from warehouse.feeds import add_feed

        def fresh(name: str) -> Path:
            db = Path(scratch) / f"{name}.duckdb"
            with open_warehouse(db) as connection:
                for url in site.feed_urls:
                    add_feed(connection, url, None, datetime.now(UTC))
            return db

        if args.kill_after is None:
            results["whole_run"] = run(fresh("whole"), environment)
            print(json.dumps(results), flush=True)
        kill_after = args.kill_after or results["whole_run"]["seconds"] / 2
        killed_db = fresh("killed")
        results["killed_after_s"] = kill_after
        results["killed"] = run(killed_db, environment, kill_after=kill_after)
        print(json.dumps(results), flush=True)
        results["next_run"] = run(killed_db, environment)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
