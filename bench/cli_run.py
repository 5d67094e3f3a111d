"""`newswatch run` as people run it: the command's wall time from start to exit, with a timeline of where it went.

The pages of an article-extraction benchmark folder are replicated and listed in `--feeds` RSS
feeds on a local HTTP server on 127.0.0.1 (as `bench/throughput.py` does), the feeds added with
`newswatch add-feed`, and `newswatch run` started as a subprocess with the default settings but
the per-host delay (`NEWSWATCH_FETCH_HOST_DELAY=0`: a site of one host would measure politeness;
real pages come from many hosts). Reported:

- the first run: wall seconds start to exit, articles stored, articles/s, peak RSS of the command
  and its children, and a timeline from the run's own log (Prefect's timestamped lines): process
  start → the flow's first line (imports, checks, the temporary server's start), each task's
  finish, the flow's last line → exit (the server's stop, the story table);
- `--noop` reruns with nothing new, each timed start to exit: no feed due (the idle path) and every
  feed due again, answering 304 (through the flow);
- `--fixtures`: the seed folder's cold run on a new database and its reruns, the same way.

Compare with `bench/throughput.py --no-flow` on the same pages: the pipeline's stages as plain
functions, model loaded, no Prefect. Both figures go in BENCHMARKS.md side by side.

Example:
    python bench/cli_run.py --data ../shared/eval/A1_scrapinghub_aeb/dev --articles 1171 --feeds 10 --noop 5
    python bench/cli_run.py --fixtures tests/fixtures/seeds --noop 5
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_site import LocalSite  # noqa: E402 (a sibling script module)
from throughput import replicate  # noqa: E402

NEWSWATCH = str(Path(sys.executable).with_name("newswatch"))
# Prefect's console lines: "17:40:27.249 | INFO    | Task run 'embed-b37' - Finished in state Completed()".
LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+\s*\| (.*)$")


def environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1",
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1", "NEWSWATCH_FETCH_HOST_DELAY": "0", **extra,
    }


def timed_run(args: list[str], env: dict[str, str]) -> dict:
    """Run `newswatch ARGS`; its wall seconds, exit code, output, the wall clock at its start and its log lines."""
    started_wall, started = time.time(), time.perf_counter()
    result = subprocess.run([NEWSWATCH, *args], capture_output=True, text=True, env=env, check=False, timeout=3600)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"cli_run: error: newswatch {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return {"seconds": seconds, "started_wall": started_wall, "stdout": result.stdout, "stderr": result.stderr}


def timeline(run: dict) -> list[tuple[str, float]]:
    """(event, seconds since the command started) from the run's Prefect log lines, then the exit."""
    start = datetime.fromtimestamp(run["started_wall"])
    events = []
    for line in run["stderr"].splitlines():
        match = LOG_LINE.match(line.strip())
        if not match:
            continue
        clock = datetime.combine(start.date(), datetime.strptime(match.group(1), "%H:%M:%S.%f").time())
        offset = (clock - start).total_seconds()
        message = match.group(2)
        task = re.match(r"Task run '(.+)-[0-9a-f]{3}' - Finished", message)
        if task:
            events.append((f"task {task.group(1)} finished", offset))
            continue
        if "Beginning flow run" in message:
            events.append(("flow begins (imports, checks, temporary server up)", offset))
        elif "Finished in state" in message and "Flow run" in message:
            events.append(("flow finished", offset))
        elif (batch := re.search(r"batch \d+ stored: \d+ new articles", message)) is not None:
            events.append((batch.group(0), offset))
        elif "Stopping temporary server" in message:
            events.append(("temporary server stopping", offset))
    events.append(("exit", run["seconds"]))
    return events


def stored_articles(stdout: str) -> int:
    match = re.search(r"new articles (\d+)", stdout)
    return int(match.group(1)) if match else 0


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def children_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def feed_run(args, scratch: Path) -> dict:
    html_folder = args.data / "html" if (args.data / "html").is_dir() else args.data
    pages = replicate(html_folder, args.articles)
    db = scratch / "cli.duckdb"
    env = environment(NEWSWATCH_DB=str(db))
    with LocalSite(pages, args.feeds) as site:
        for url in site.feed_urls:
            timed_run(["add-feed", url], env)
        first = timed_run(["run"], env)
        if args.log is not None:
            args.log.write_text(first["stderr"], encoding="utf-8")
        stored = stored_articles(first["stdout"])
        result = {
            "articles_served": len(pages), "feeds": args.feeds, "articles_stored": stored,
            "wall_seconds": round(first["seconds"], 1), "articles_per_second": round(stored / first["seconds"], 1),
            "peak_rss_mib_command_or_child": round(children_peak_rss_mib()),
            "timeline": [(name, round(offset, 2)) for name, offset in timeline(first)],
        }
        if args.noop:
            idle = [timed_run(["run"], env)["seconds"] for _ in range(args.noop)]
            not_modified = []
            for _ in range(args.noop):
                import duckdb

                with duckdb.connect(str(db)) as connection:
                    connection.execute("UPDATE feeds SET next_due_at = now()")
                not_modified.append(timed_run(["run"], env)["seconds"])
            result["noop_no_feed_due_seconds"] = spread(idle)
            result["noop_all_feeds_304_seconds"] = spread(not_modified)
    return result


def fixture_run(args, scratch: Path) -> dict:
    cold, reruns = [], []
    for index in range(args.cold):
        db = scratch / f"seeds-{index}.duckdb"
        run = timed_run(["run", "--fixtures", str(args.fixtures), "--db", str(db)], environment())
        cold.append(run["seconds"])
    result = {"cold_seconds": spread(cold), "cold_timeline": [(n, round(o, 2)) for n, o in timeline(run)]}
    if args.noop:
        reruns = [timed_run(["run", "--fixtures", str(args.fixtures), "--db", str(db)], environment())["seconds"]
                  for _ in range(args.noop)]
        result["noop_seconds"] = spread(reruns)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder holding html/*.html pages (a feed run)")
    parser.add_argument("--articles", type=int, default=1171, help="pages to serve and ingest")
    parser.add_argument("--feeds", type=int, default=10, help="feeds the pages are spread over")
    parser.add_argument("--fixtures", type=Path, help="a fixture folder instead (e.g. tests/fixtures/seeds)")
    parser.add_argument("--cold", type=int, default=3, help="cold fixture runs, each on a new database")
    parser.add_argument("--noop", type=int, default=0, help="reruns with nothing new to time")
    parser.add_argument("--log", type=Path, help="write the first feed run's log (stderr) to this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if (args.data is None) == (args.fixtures is None):
        parser.error("give --data (a feed run) or --fixtures (a fixture run)")
    with tempfile.TemporaryDirectory() as scratch:
        result = feed_run(args, Path(scratch)) if args.data else fixture_run(args, Path(scratch))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key.endswith("timeline"):
                print(key)
                previous = 0.0
                for name, offset in value:
                    print(f"  {offset:8.2f} s  (+{offset - previous:6.2f})  {name}")
                    previous = offset
            else:
                print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
