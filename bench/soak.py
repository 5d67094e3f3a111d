"""A day of service, compressed: `newswatch serve` for half an hour against a busy, misbehaving local site.

Everything runs on 127.0.0.1. `newswatch serve --interval S` (default 30 s) runs on a fresh
database with its own Prefect server on a free port, `NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`,
`NEWSWATCH_FETCH_HOST_DELAY=0`, a feed poll interval shorter than the schedule's (every run polls
every healthy feed) and the maintenance run every `--maintenance-cron` (default every 10 minutes
instead of daily). One local site (`bench.http_server.LocalServer`) serves, with ETags (a 304
when unchanged):

- `--feeds` news feeds (5) that gain `--per-minute` entries (2) every minute and list the newest
  `--window` (30); each entry links to an article page (an ECB+ `B1_ecbplus_events/dev` text with a
  site's navigation and footer), which is fetched and extracted (`NEWSWATCH_FETCH_PAGES` stays on);
- a flaky feed like them that answers 500, 502 or 503 during bursts of `--burst-minutes` every
  `--burst-every` minutes;
- a hanging feed: one request in two gets nothing at all, the other its headers and then a byte
  every 2 s, for ever; only `NEWSWATCH_FETCH_TOTAL_TIMEOUT`, set to `--fetch-timeout` (10 s; the
  default is 60 s) for the bench, ends them;
- a wire feed that starts with `--big-start` entries (1000) and gains `--big-rate` (200) a minute,
  keeping them all (thousands), republishing the same texts (copies) under new links;
  `NEWSWATCH_FEED_MAX_NEW_ENTRIES` keeps its default (500 a run).

One watch, added before the service starts with
`newswatch add-watch soak --query soakprobe --notify json://127.0.0.1:PORT/hook`, matches the
entries of `--probe-topics` ECB+ topics (their pages end with the word); the webhook receiver
(`bench.receivers.WebhookReceiver`) answers every `--fail-every`-th request (3rd) with 500, so
deliveries are retried on later runs (`NEWSWATCH_ALERT_RETRY_SECONDS`, default 60 s, doubling).
Publishing stops `--drain` minutes before the end, so the last entries, the flaky feed's backlog
and the delivery retries can complete.

Every `--sample-seconds` (5 s) the service's processes are measured: resident memory, open file
descriptors (`/proc/PID/fd`) and threads, grouped as `serve` (the command), `prefect-server` (the
Prefect server it started, with its children) and `flow-runs` (the runner's flow-run processes
with their extraction workers), and the number of processes below `serve`. After `--minutes` the
service is stopped with SIGTERM and every process it started is checked to be gone. Then the
database is read (reading it while the service writes would hold the file): per run its duration
and articles (`runs`); that every entry the site served before the last completed ingest run
ended is stored exactly once (by link); that every alert (`alerts`, `alert_deliveries`) was
received once with a 200; and the slopes of memory, descriptors and threads over time after
`--warmup` minutes (linear regression), for the long-lived processes (`serve` + `prefect-server`).

Prints a Markdown table per `--bucket-minutes` (5) and a summary; `--output FILE` writes
everything, per run and per sample, as JSON.

Example:
    python bench/soak.py --minutes 30 --keep --output /tmp/soak.json
    python bench/soak.py --minutes 3 --burst-start 0.5 --burst-minutes 0.5      # a quick try
"""

import argparse
import itertools
import json
import os
import random
import select
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from alert_latency import _title_and_text, free_port, read_docs  # noqa: E402 (a sibling script module)
from serving import Service  # noqa: E402

PROBE = "soakprobe"
DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "B1_ecbplus_events" / "dev"
HANG, FLAKY, WIRE = "hang", "flaky", "wire"


class Site:
    """The local site's feeds and pages; records every feed request as (wall time, feed, status, version)."""

    def __init__(self, server, docs: list[dict], args, rng: random.Random):
        self.server = server
        self.args = args
        self.lock = threading.Lock()
        self.news = [f"news{number}" for number in range(args.feeds)]
        self.windows = {**{name: args.window for name in self.news}, FLAKY: args.window, WIRE: None}
        self.entries: dict[str, list[dict]] = {name: [] for name in self.windows}  # oldest first
        self.cache: dict[str, tuple[int, bytes]] = {}
        self.polls: list[tuple[float, str, int, int]] = []
        self.pages: dict[str, dict] = {}
        self.hangs = 0
        probe_topics = set(rng.sample(sorted({doc["topic"] for doc in docs}), args.probe_topics))
        self.probe_topics = sorted(probe_topics)
        news_order, wire_order = docs[:], docs[:]
        rng.shuffle(news_order)
        rng.shuffle(wire_order)
        self.news_docs, self.wire_docs = itertools.cycle(news_order), itertools.cycle(wire_order)
        self.bursts_from: float | None = None  # wall time publishing started (bursts are timed from it)

    def publish(self, feed: str, count: int, at: datetime, spacing: timedelta = timedelta(0)) -> None:
        """Add `count` entries to a feed, dated `at` (the last) and `spacing` apart before it."""
        with self.lock:
            for index in range(count):
                number = len(self.entries[feed])
                guid = f"{feed}-{number}"
                doc = next(self.wire_docs if feed == WIRE else self.news_docs)
                title, text = _title_and_text(doc)
                if feed == WIRE:
                    title = f"{title[:120]} (wire {number})"
                probe = feed != WIRE and doc["topic"] in self.probe_topics
                entry = {"guid": guid, "title": title, "summary": text.split("\n")[0][:200],
                         "published": at - spacing * (count - 1 - index), "wall": time.time()}
                self.entries[feed].append(entry)
                self.pages[guid] = {"title": title, "text": text, "probe": probe}

    def in_burst(self, now: float) -> bool:
        if self.bursts_from is None:
            return False
        minutes = (now - self.bursts_from) / 60 - self.args.burst_start
        publishing = 0 <= minutes < self.args.publish_minutes - self.args.burst_start
        return publishing and minutes % self.args.burst_every < self.args.burst_minutes

    def version(self, feed: str) -> int:
        with self.lock:
            return len(self.entries[feed])

    def served(self, feed: str, version: int) -> range:
        """The entry numbers a feed listed at this version."""
        window = self.windows[feed]
        return range(max(0, version - window) if window else 0, version)

    def body(self, feed: str) -> tuple[int, bytes]:
        with self.lock:
            version = len(self.entries[feed])
            if self.cache.get(feed, (None,))[0] == version:
                return self.cache[feed]
            shown = [self.entries[feed][number] for number in self.served(feed, version)]
        items = "".join(
            f"<item><title>{escape(entry['title'])}</title><link>{self.server.base_url}/a/{entry['guid']}.html</link>"
            f"<guid isPermaLink=\"false\">{entry['guid']}</guid><pubDate>{format_datetime(entry['published'])}</pubDate>"
            f"<description>{escape(entry['summary'])}</description></item>"
            for entry in reversed(shown)
        )
        xml = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
               f"<title>Soak {feed}</title><link>{self.server.base_url}/</link><description>bench</description>"
               f"{items}</channel></rss>").encode()
        with self.lock:
            self.cache[feed] = (version, xml)
        return version, xml

    def page(self, guid: str) -> bytes | None:
        with self.lock:
            page = self.pages.get(guid)
        if page is None:
            return None
        lines = [line for line in page["text"].split("\n") if line.strip()]
        if page["probe"]:
            lines.append(f"Filed under {PROBE}.")
        paragraphs = "".join(f"<p>{escape(line)}</p>" for line in lines)
        return (f"<html><head><title>{escape(page['title'])} | Soak Times</title></head><body>"
                "<nav><a href='/'>Home</a> | <a href='/world'>World</a> | <a href='/sport'>Sport</a></nav>"
                f"<article><h1>{escape(page['title'])}</h1>{paragraphs}</article>"
                "<footer>Soak Times, a bench site. Subscribe to our newsletter.</footer></body></html>").encode()

    def install(self) -> None:
        from bench.http_server import respond

        def feed(request) -> None:
            name = request.path.split("?")[0].rsplit("/", 1)[-1].removesuffix(".xml")
            if name == HANG:
                self._hang(request)
                return
            if name not in self.entries:
                respond(request, 404, b"not found", "text/plain")
                return
            now = time.time()
            if name == FLAKY and self.in_burst(now):
                status = (500, 502, 503)[len(self.polls) % 3]
                self.polls.append((now, name, status, self.version(name)))
                respond(request, status, b"server error", "text/plain")
                return
            version, xml = self.body(name)
            etag = f'"{name}-{version}"'
            status = 304 if request.headers.get("If-None-Match") == etag else 200
            self.polls.append((now, name, status, version))
            respond(request, status, b"" if status == 304 else xml,
                    None if status == 304 else "application/rss+xml; charset=utf-8", {"ETag": etag})

        def article(request) -> None:
            page = self.page(request.path.split("?")[0].rsplit("/", 1)[-1].removesuffix(".html"))
            respond(request, 200 if page else 404, page or b"not found")

        self.server.route("/feeds/*", feed)
        self.server.route("/a/*", article)

    def _hang(self, request) -> None:
        """Never answer: silence, or headers and then a byte every 2 s; returns when the client gives up."""
        with self.lock:
            self.hangs += 1
            silent = self.hangs % 2 == 1
        self.polls.append((time.time(), HANG, 0, 0))
        deadline = time.monotonic() + 3600
        if not silent:
            request.send_response(200)
            request.send_header("Content-Type", "application/rss+xml")
            request.end_headers()
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            if silent:
                readable, _, _ = select.select([request.connection], [], [], 1.0)
                if readable and not request.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed the connection
            else:
                request.wfile.write(b" ")  # a closed connection raises, which the server ignores
                self.server.stopping.wait(2.0)


def flaky_receiver(fail_every: int):
    """A `WebhookReceiver` that answers every `fail_every`-th request with 500 (deliveries to it are sequential)."""
    from bench.receivers import WebhookReceiver

    class FlakyReceiver(WebhookReceiver):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.failed: set[int] = set()  # 0-based indexes into `received`

        def _handle(self, request) -> None:
            with self._lock:
                if fail_every and (self.count + 1) % fail_every == 0:
                    self._plans.append(("fail", 500.0))
                    self.failed.add(self.count)
                self.count += 1
            super()._handle(request)

    return FlakyReceiver()


def classify(service_pid: int, pids: list[int]) -> dict[int, str]:
    """Each process's group: serve, prefect-server (and its children) or flow-runs (everything else below serve)."""
    parents, commands = {}, {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            parents[pid], commands[pid] = process.ppid(), " ".join(process.cmdline())
        except psutil.Error:
            continue
    groups = {service_pid: "serve"}
    for pid in parents:
        top = pid
        while parents.get(top) not in (service_pid, None):
            top = parents[top]
        groups[pid] = "prefect-server" if "server start" in commands.get(top, "") else "flow-runs"
    return groups


def measure(service_pid: int, pids: list[int], ready_wall: float) -> dict:
    """RSS (MiB), open descriptors and threads per group of the service's processes, now."""
    sample = {"wall": time.time(), "elapsed_s": round(time.time() - ready_wall, 1), "children": len(pids)}
    for group in ("serve", "prefect-server", "flow-runs"):
        sample[group] = {"processes": 0, "rss_mib": 0.0, "fds": 0, "threads": 0}
    for pid, group in classify(service_pid, pids).items():
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                rss, fds, threads = process.memory_info().rss, process.num_fds(), process.num_threads()
        except psutil.Error:
            continue
        totals = sample[group]
        totals["processes"] += 1
        totals["rss_mib"] = round(totals["rss_mib"] + rss / 2**20, 1)
        totals["fds"] += fds
        totals["threads"] += threads
    return sample


def long_lived(sample: dict, key: str) -> float:
    """A figure of the processes that live as long as the service (serve + prefect-server)."""
    return round(sample["serve"][key] + sample["prefect-server"][key], 1)


def everything(sample: dict, key: str) -> float:
    return round(long_lived(sample, key) + sample["flow-runs"][key], 1)


def slope_per_hour(samples: list[dict], value) -> float | None:
    if len(samples) < 3:
        return None
    hours = [sample["elapsed_s"] / 3600 for sample in samples]
    return round(statistics.linear_regression(hours, [value(sample) for sample in samples]).slope, 2)


def prefect_run_states(api_url: str) -> dict[str, int]:
    """How many flow runs the Prefect server has in each state (scheduled, completed, cancelled...)."""
    import httpx

    states: Counter = Counter()
    offset = 0
    while True:
        page = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200, "offset": offset}, timeout=30)
        runs = page.raise_for_status().json()
        states.update(run.get("state_type") or "none" for run in runs)
        if len(runs) < 200:
            return dict(states)
        offset += 200


def run(args) -> dict:
    from bench.http_server import LocalServer

    rng = random.Random(args.seed)
    docs = read_docs(args.data)
    scratch = Path(tempfile.mkdtemp(prefix="soak-"))
    db = scratch / "soak.duckdb"
    server, receiver = LocalServer(), flaky_receiver(args.fail_every)
    site = Site(server, docs, args, rng)
    site.install()
    server.start()
    receiver.start()
    prefect_port = free_port()
    environment = {
        **os.environ,
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1",
        "NEWSWATCH_FETCH_HOST_DELAY": "0",
        "NEWSWATCH_POLL_INTERVAL_MINUTES": str(args.poll_minutes),
        "NEWSWATCH_FETCH_TOTAL_TIMEOUT": str(args.fetch_timeout),
        "NEWSWATCH_MAINTENANCE_CRON": args.maintenance_cron,
        "NEWSWATCH_PREFECT_PORT": str(prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        **dict(setting.split("=", 1) for setting in args.env),
    }
    environment.pop("PREFECT_API_URL", None)
    start = datetime.now(UTC).replace(microsecond=0)
    for feed in [*site.news, FLAKY]:
        site.publish(feed, 3 * args.per_minute, start - timedelta(hours=1), timedelta(minutes=1))
    site.publish(WIRE, args.big_start, start - timedelta(minutes=1), timedelta(seconds=20))
    steps = [["add-feed", server.url(f"/feeds/{feed}.xml"), "--name", f"Soak {feed}"] for feed in [*site.news, FLAKY, HANG, WIRE]]
    steps.append(["add-watch", "soak", "--query", PROBE, "--notify", receiver.json_url("/hook")])
    service = Service("soak", db, environment, args.interval, steps)
    samples: list[dict] = []
    stop_watching = threading.Event()
    ready_wall = time.time()

    def watch_processes() -> None:  # every process the service starts, and a sample every `sample_seconds`
        next_sample = 0.0
        while not stop_watching.is_set():
            pids = service.record_children()
            if time.monotonic() >= next_sample and service.process.poll() is None:
                samples.append(measure(service.process.pid, pids, ready_wall))
                next_sample = time.monotonic() + args.sample_seconds
            stop_watching.wait(0.5)

    def publish_every_minute(until: float) -> None:
        while not stop_watching.wait(60 - (time.time() - site.bursts_from) % 60) and time.time() < until:
            now = datetime.now(UTC).replace(microsecond=0)
            for feed in [*site.news, FLAKY]:
                site.publish(feed, args.per_minute, now, timedelta(seconds=60 / max(args.per_minute, 1)))
            site.publish(WIRE, args.big_rate, now, timedelta(seconds=60 / max(args.big_rate, 1)))

    error, ready_seconds, prefect_states = None, None, {}
    try:
        ready_seconds = service.wait_until_serving(args.startup_timeout)
        ready_wall = site.bursts_from = time.time()
        end_wall = ready_wall + args.minutes * 60
        watcher = threading.Thread(target=watch_processes, daemon=True)
        publisher = threading.Thread(target=publish_every_minute, args=(ready_wall + args.publish_minutes * 60,), daemon=True)
        watcher.start()
        publisher.start()
        while time.time() < end_wall:
            if service.process.poll() is not None:
                raise RuntimeError(f"the service exited after {time.time() - ready_wall:.0f} s with {service.process.returncode}")
            time.sleep(min(5.0, max(0.0, end_wall - time.time())))
        try:
            prefect_states = prefect_run_states(f"http://127.0.0.1:{prefect_port}/api")
        except Exception as caught:  # noqa: BLE001 - a figure, not a check
            prefect_states = {"error": str(caught)[:200]}
    except BaseException as caught:  # noqa: BLE001 - report it after the service is stopped
        error = caught
    finally:
        stop_seconds, left = service.stop()
        stop_watching.set()
        left_commands = []
        for pid in left:  # ours (started by the service), still there: say so and end them
            try:
                left_commands.append(" ".join(psutil.Process(pid).cmdline())[:200])
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, psutil.Error):
                pass
        server.stop()
        receiver.stop()
    if error is not None:
        print(f"soak: scratch folder kept: {scratch}", file=sys.stderr)
        raise error
    result = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "probe_topics": site.probe_topics,
        "ready_s": round(ready_seconds, 1),
        "stop_s": round(stop_seconds, 1),
        "exit_code": service.process.returncode,
        "processes_started": len(service.seen),
        "processes_left": len(left),
        "processes_left_commands": left_commands,
        "prefect_flow_run_states": prefect_states,
        "hang_requests": site.hangs,
        "feed_responses": dict(Counter(f"{feed} {status}" for _, feed, status, _ in site.polls)),
        "published": {feed: len(entries) for feed, entries in site.entries.items()},
        "webhook_requests": len(receiver.received),
        "webhook_failed_on_purpose": len(receiver.failed),
        "serve_log": log_lines(service.log_path),
        "database_mib": round(db.stat().st_size / 2**20, 1),
        "prefect_database_mib": round(sum(f.stat().st_size for f in (scratch / "prefect").glob("*.db*")) / 2**20, 1),
    }
    result.update(check_database(db, site, receiver, ready_wall))
    result["samples"] = samples
    result.update(summarise_samples(samples, result["runs"], args))
    if args.keep:
        result["scratch"] = str(scratch)
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return result


def log_lines(log_path: Path) -> dict:
    """Counts of the serve log's errors and warnings, with the first few distinct error lines."""
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "Traceback" in line or "| ERROR" in line or "Crash" in line]
    return {"lines": len(lines), "warnings": sum("| WARNING" in line for line in lines), "errors": len(errors),
            "first_errors": list(dict.fromkeys(line.strip()[:240] for line in errors))[:8]}


def check_database(db: Path, site: Site, receiver, ready_wall: float) -> dict:
    """Runs, lost or doubled entries and alert deliveries, from the database of the stopped service."""
    from warehouse.connection import open_warehouse
    from warehouse.runs import recent_runs

    with open_warehouse(db, read_only=True) as connection:
        runs = sorted(recent_runs(connection, 100_000), key=lambda r: r.started_at)
        articles = connection.execute("SELECT url, canonical_url, duplicate_of IS NOT NULL FROM articles").fetchall()
        alerts = connection.execute(
            "SELECT a.alert_id, a.kind, d.status, d.attempts FROM alerts a LEFT JOIN alert_deliveries d USING (alert_id)"
        ).fetchall()
    run_rows = [{
        "flow": r.flow, "status": r.status, "elapsed_s": round(r.started_at.timestamp() - ready_wall, 1),
        "started_wall": r.started_at.timestamp(),
        "duration_s": round((r.finished_at - r.started_at).total_seconds(), 1) if r.finished_at else None,
        "feeds_polled": r.feeds_polled, "not_modified": r.not_modified, "new_articles": r.new_articles,
        "duplicates": r.duplicates, "errors": r.errors, "message": r.message,
    } for r in runs]
    completed = [r for r in runs if r.flow == "ingest-feeds" and r.status == "completed" and r.finished_at]
    cutoff = completed[-1].finished_at.timestamp() if completed else 0.0

    # Every entry a feed listed in an answer given before the last completed ingest run ended.
    expected: dict[str, str] = {}
    for at, feed, status, version in list(site.polls):
        if status in (200, 304) and at <= cutoff:
            for number in site.served(feed, version):
                expected[f"{feed}-{number}"] = feed

    def guid_of(url: str | None) -> str | None:
        prefix = f"{site.server.base_url}/a/"
        return url[len(prefix):].removesuffix(".html") if url and url.startswith(prefix) else None

    stored = Counter(guid_of(url) for url, _, _ in articles)
    canonical = Counter(guid_of(canonical_url) for _, canonical_url, _ in articles)
    lost = sorted(set(expected) - set(stored))
    received_ok: Counter = Counter()
    requests_of: Counter = Counter()
    for index, request in enumerate(receiver.received):
        try:
            alert_id = request.json()["newswatch"]["alert_id"]
        except (ValueError, KeyError, TypeError):
            alert_id = "(unreadable)"
        requests_of[alert_id] += 1
        if index not in receiver.failed:
            received_ok[alert_id] += 1
    statuses = Counter(status for _, _, status, _ in alerts)
    alert_ids = {alert_id for alert_id, *_ in alerts}
    return {
        "runs": run_rows,
        "articles": len(articles),
        "article_copies": sum(copy for _, _, copy in articles),
        "entries_expected": len(expected),
        "entries_lost": len(lost),
        "entries_lost_by_feed": dict(Counter(expected[guid] for guid in lost)),
        "entries_lost_examples": lost[:10],
        "entries_stored_twice": sum(count > 1 for guid, count in stored.items() if guid),
        "canonical_urls_twice": sum(count > 1 for guid, count in canonical.items() if guid),
        "articles_not_published": stored.get(None, 0),
        "entries_stored_beyond_cutoff": len(set(stored) - set(expected) - {None}),
        "alerts": len(alert_ids),
        "alert_kinds": dict(Counter(kind for _, kind, _, _ in alerts)),
        "deliveries_by_status": dict(statuses),
        "alerts_received_ok_once": sum(received_ok[alert_id] == 1 for alert_id in alert_ids),
        "alerts_received_ok_more_than_once": sorted(a for a in alert_ids if received_ok[a] > 1),
        "alerts_delivered_not_received": sorted(a for a, _, s, _ in alerts if s == "delivered" and not received_ok[a]),
        "alerts_received_not_stored": sorted(set(received_ok) - alert_ids),
        "attempts_differ_from_requests": sorted(a for a, _, _, n in alerts if n is not None and n != requests_of[a]),
    }


def summarise_samples(samples: list[dict], runs: list[dict], args) -> dict:
    """Per-bucket rows, start and end figures, and slopes after the warm-up."""
    after = [s for s in samples if s["elapsed_s"] >= args.warmup * 60]
    first = [s for s in after if s["elapsed_s"] < args.warmup * 60 + 60]
    last = [s for s in after if s["elapsed_s"] >= (after[-1]["elapsed_s"] - 60 if after else 0)]

    def mean(rows, value):
        return round(statistics.fmean(value(s) for s in rows), 1) if rows else None

    buckets = []
    width = args.bucket_minutes * 60
    count = int(max([s["elapsed_s"] for s in samples] + [0]) // width) + 1
    for index in range(count):
        low, high = index * width, (index + 1) * width
        rows = [s for s in samples if low <= s["elapsed_s"] < high]
        ingest = [r for r in runs if r["flow"] == "ingest-feeds" and low <= r["elapsed_s"] < high]
        durations = [r["duration_s"] for r in ingest if r["duration_s"] is not None]
        buckets.append({
            "from_min": low / 60, "to_min": high / 60,
            "ingest_runs": len(ingest), "not_completed": sum(r["status"] != "completed" for r in ingest),
            "other_runs": sum(1 for r in runs if r["flow"] != "ingest-feeds" and low <= r["elapsed_s"] < high),
            "articles": sum(r["new_articles"] for r in ingest),
            "run_s_median": round(statistics.median(durations), 1) if durations else None,
            "run_s_max": max(durations) if durations else None,
            "long_lived_rss_mib": mean(rows, lambda s: long_lived(s, "rss_mib")),
            "all_rss_mib_max": max((everything(s, "rss_mib") for s in rows), default=None),
            "long_lived_fds": mean(rows, lambda s: long_lived(s, "fds")),
            "all_fds_max": max((everything(s, "fds") for s in rows), default=None),
            "long_lived_threads": mean(rows, lambda s: long_lived(s, "threads")),
            "children_max": max((s["children"] for s in rows), default=None),
        })
    idle = [s for s in after if s["flow-runs"]["processes"] == 0]
    return {
        "buckets": buckets,
        "slope_samples": len(after),
        "long_lived_rss_mib_start": mean(first, lambda s: long_lived(s, "rss_mib")),
        "long_lived_rss_mib_end": mean(last, lambda s: long_lived(s, "rss_mib")),
        "long_lived_rss_mib_per_hour": slope_per_hour(after, lambda s: long_lived(s, "rss_mib")),
        "serve_rss_mib_per_hour": slope_per_hour(after, lambda s: s["serve"]["rss_mib"]),
        "prefect_server_rss_mib_per_hour": slope_per_hour(after, lambda s: s["prefect-server"]["rss_mib"]),
        "idle_all_rss_mib_per_hour": slope_per_hour(idle, lambda s: everything(s, "rss_mib")),
        "long_lived_fds_start": mean(first, lambda s: long_lived(s, "fds")),
        "long_lived_fds_end": mean(last, lambda s: long_lived(s, "fds")),
        "long_lived_fds_per_hour": slope_per_hour(after, lambda s: long_lived(s, "fds")),
        "long_lived_threads_start": mean(first, lambda s: long_lived(s, "threads")),
        "long_lived_threads_end": mean(last, lambda s: long_lived(s, "threads")),
        "long_lived_threads_per_hour": slope_per_hour(after, lambda s: long_lived(s, "threads")),
        "idle_children_per_hour": slope_per_hour(idle, lambda s: s["children"]),
        "children_max": max((s["children"] for s in samples), default=None),
        "children_idle_max": max((s["children"] for s in idle), default=None),
        "all_rss_mib_max": max((everything(s, "rss_mib") for s in samples), default=None),
    }


def print_report(result: dict) -> None:
    settings = result["settings"]
    ingest = [r for r in result["runs"] if r["flow"] == "ingest-feeds"]
    durations = [r["duration_s"] for r in ingest if r["duration_s"] is not None]
    print(f"newswatch serve --interval {settings['interval']:g} for {settings['minutes']:g} min "
          f"(publishing for {settings['publish_minutes']:g}, warm-up {settings['warmup']:g}): ready in {result['ready_s']} s, "
          f"SIGTERM → exit {result['exit_code']} in {result['stop_s']} s"
          + (f"; settings given: {' '.join(settings['env'])}" if settings["env"] else ""))
    print()
    print("| minutes | ingest runs | articles | run s median / max | RSS serve+server MiB | RSS all max MiB "
          "| fds serve+server | fds all max | threads serve+server | processes max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in result["buckets"]:
        runs = f"{b['ingest_runs']}" + (f" ({b['not_completed']} not completed)" if b["not_completed"] else "")
        runs += f" + {b['other_runs']} maint." if b["other_runs"] else ""
        print(f"| {b['from_min']:g}–{b['to_min']:g} | {runs} | {b['articles']} | {b['run_s_median']} / {b['run_s_max']} "
              f"| {b['long_lived_rss_mib']} | {b['all_rss_mib_max']} | {b['long_lived_fds']} | {b['all_fds_max']} "
              f"| {b['long_lived_threads']} | {b['children_max']} |")
    print()
    statuses = Counter(r["status"] for r in ingest)
    print(f"ingest runs: {len(ingest)} ({', '.join(f'{n} {s}' for s, n in statuses.items())}); "
          f"duration median {statistics.median(durations) if durations else None} s, max {max(durations, default=None)} s; "
          f"other runs: {dict(Counter(r['flow'] for r in result['runs'] if r['flow'] != 'ingest-feeds'))}; "
          f"Prefect flow runs by state: {result['prefect_flow_run_states']}")
    print(f"published: {result['published']}; feed answers: {result['feed_responses']}; hanging requests: {result['hang_requests']}")
    print(f"articles: {result['articles']} ({result['article_copies']} copies); entries expected {result['entries_expected']}, "
          f"lost {result['entries_lost']} {result['entries_lost_by_feed'] or ''}, stored twice {result['entries_stored_twice']}, "
          f"canonical URL twice {result['canonical_urls_twice']}, not published {result['articles_not_published']}")
    print(f"alerts: {result['alerts']} {result['alert_kinds']}; deliveries {result['deliveries_by_status']}; "
          f"received with 200 exactly once {result['alerts_received_ok_once']}, more than once "
          f"{len(result['alerts_received_ok_more_than_once'])}, delivered but not received "
          f"{len(result['alerts_delivered_not_received'])}, received but not stored {len(result['alerts_received_not_stored'])}, "
          f"attempts ≠ requests {len(result['attempts_differ_from_requests'])}; webhook requests {result['webhook_requests']} "
          f"({result['webhook_failed_on_purpose']} answered 500 on purpose)")
    print(f"RSS serve+server: {result['long_lived_rss_mib_start']} → {result['long_lived_rss_mib_end']} MiB, "
          f"slope {result['long_lived_rss_mib_per_hour']} MiB/h (serve {result['serve_rss_mib_per_hour']}, "
          f"server {result['prefect_server_rss_mib_per_hour']}; all processes while idle {result['idle_all_rss_mib_per_hour']}); "
          f"peak of all {result['all_rss_mib_max']} MiB")
    print(f"open fds serve+server: {result['long_lived_fds_start']} → {result['long_lived_fds_end']}, slope "
          f"{result['long_lived_fds_per_hour']}/h; threads {result['long_lived_threads_start']} → "
          f"{result['long_lived_threads_end']}, slope {result['long_lived_threads_per_hour']}/h; processes below serve: "
          f"max {result['children_max']}, idle max {result['children_idle_max']}, idle slope {result['idle_children_per_hour']}/h "
          f"({result['slope_samples']} samples after warm-up)")
    print(f"after SIGTERM: {result['processes_left']} of {result['processes_started']} started processes left "
          f"{result['processes_left_commands'] or ''}; serve log: {result['serve_log']['errors']} error lines, "
          f"{result['serve_log']['warnings']} warnings; database {result['database_mib']} MiB, Prefect database "
          f"{result['prefect_database_mib']} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with docs.jsonl (ECB+ B1 dev)")
    parser.add_argument("--minutes", type=float, default=30, help="minutes of service, from ready to SIGTERM")
    parser.add_argument("--drain", type=float, help="minutes at the end without new entries (default: min(5, minutes/3))")
    parser.add_argument("--warmup", type=float, help="minutes left out of the slopes (default: min(5, minutes/3))")
    parser.add_argument("--interval", type=float, default=30, help="seconds between scheduled runs (serve --interval)")
    parser.add_argument("--maintenance-cron", default="*/10 * * * *", help="NEWSWATCH_MAINTENANCE_CRON")
    parser.add_argument("--feeds", type=int, default=5, help="news feeds gaining entries every minute")
    parser.add_argument("--per-minute", type=int, default=2, help="new entries per news feed (and the flaky one) a minute")
    parser.add_argument("--window", type=int, default=30, help="entries a news feed lists")
    parser.add_argument("--big-start", type=int, default=1000, help="entries of the wire feed at the start")
    parser.add_argument("--big-rate", type=int, default=200, help="entries the wire feed gains a minute")
    parser.add_argument("--burst-start", type=float, default=2, help="minute of the flaky feed's first burst of 5xx")
    parser.add_argument("--burst-every", type=float, default=10, help="minutes from one burst's start to the next")
    parser.add_argument("--burst-minutes", type=float, default=3, help="minutes a burst lasts")
    parser.add_argument("--fetch-timeout", type=float, default=10, help="NEWSWATCH_FETCH_TOTAL_TIMEOUT (seconds)")
    parser.add_argument("--poll-minutes", type=float, default=0.1, help="NEWSWATCH_POLL_INTERVAL_MINUTES")
    parser.add_argument("--probe-topics", type=int, default=5, help="ECB+ topics whose entries the watch matches")
    parser.add_argument("--fail-every", type=int, default=3, help="the webhook answers every n-th request with 500 (0: never)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a further setting for the service, e.g. NEWSWATCH_BATCH_SIZE=1000 (repeatable)")
    parser.add_argument("--sample-seconds", type=float, default=5, help="seconds between samples of the processes")
    parser.add_argument("--bucket-minutes", type=float, default=5, help="minutes per row of the table")
    parser.add_argument("--seed", type=int, default=1, help="texts, their order and the watched topics")
    parser.add_argument("--startup-timeout", type=float, default=240, help="seconds to wait for the service")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (database, serve.log)")
    parser.add_argument("--output", type=Path, help="write the whole result (runs, samples) as JSON here")
    args = parser.parse_args(argv)
    if any("=" not in setting for setting in args.env):
        parser.error("--env takes NAME=VALUE")
    if not (args.data / "docs.jsonl").is_file():
        print(f"soak: skipped: {args.data / 'docs.jsonl'} not found (the ECB+ B1 dev texts, see ../shared/eval/README.md)")
        return 0
    args.drain = min(5.0, args.minutes / 3) if args.drain is None else args.drain
    args.warmup = min(5.0, args.minutes / 3) if args.warmup is None else args.warmup
    args.publish_minutes = args.minutes - args.drain
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopping the bench stops the service first
    result = run(args)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1, default=str))
    print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
