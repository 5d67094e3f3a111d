"""From publication to webhook: how long an alert takes under `newswatch serve --interval N`.

Everything runs on 127.0.0.1: a feed server (`bench.http_server.LocalServer`, RSS 2.0 with an
ETag, so unchanged polls cost a 304), a webhook receiver (`bench.receivers.WebhookReceiver`) and
`newswatch serve --interval N` on a fresh database (its own Prefect server on a free port), with
`NEWSWATCH_ALLOW_PRIVATE_NETWORKS=1`, `NEWSWATCH_FETCH_HOST_DELAY=0` and a poll interval of the
feed shorter than the schedule's, so every run polls it. Before the service starts, the feed
(three old entries) and one watch are added with the command line:

    newswatch add-watch latency --query PROBE --notify json://127.0.0.1:PORT/hook

Once the service has polled the feed twice, entries are published one at a time, each after a
random pause (uniform in [0, N] s) once the previous one's alert has arrived: at time T the
feed's content changes to include a new entry with `pubDate` T, the word PROBE and the text of an
ECB+ `B1_ecbplus_events/dev` article of another topic than the entries before (so each is a new
story and a new alert). Measured per entry: T → the first poll that served it (the wait for the
next run), that poll → the webhook's arrival (`received_at`: the run's fetch, embed, dedupe,
cluster, load with the alert decided, then delivery), and T → arrival. The ingest runs' own
durations come from the `runs` table, read after the service has stopped (reading it while the
service runs would hold the database file).

The service is stopped with SIGTERM; every process it started is checked to be gone (and killed,
and reported, if one is not).

Example:
    python bench/alert_latency.py --data ../shared/eval/B1_ecbplus_events/dev --entries 6
"""

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving import Service  # noqa: E402 (a sibling module of this script)

PROBE = "latencyprobe"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_docs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


class Feed:
    """The feed's current entries, served as RSS 2.0 with an ETag; records every poll."""

    def __init__(self, base_url: str, pages: bool):
        self.base_url = base_url
        self.pages = pages
        self.entries: list[dict] = []  # newest first
        self.lock = threading.Lock()
        self.polls: list[tuple[float, int, frozenset]] = []  # (monotonic, status, guids served)

    def add(self, guid: str, title: str, text: str, published: datetime) -> None:
        with self.lock:
            self.entries.insert(0, {"guid": guid, "title": title, "text": text, "published": published})

    def body(self) -> tuple[bytes, str, frozenset]:
        with self.lock:
            entries = list(self.entries)
        items = []
        for entry in entries:
            link = f"{self.base_url}/articles/{entry['guid']}.html"
            items.append(
                f"<item><title>{escape(entry['title'])}</title><link>{link}</link>"
                f"<guid isPermaLink=\"false\">{entry['guid']}</guid><pubDate>{format_datetime(entry['published'])}</pubDate>"
                f"<description>{escape(entry['text'])}</description></item>"
            )
        xml = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Latency wire</title>'
               f"<link>{self.base_url}/</link><description>bench</description>{''.join(items)}</channel></rss>").encode()
        return xml, '"' + hashlib.sha256(xml).hexdigest()[:16] + '"', frozenset(e["guid"] for e in entries)

    def page(self, guid: str) -> bytes | None:
        with self.lock:
            entry = next((e for e in self.entries if e["guid"] == guid), None)
        if entry is None:
            return None
        paragraphs = "".join(f"<p>{escape(line)}</p>" for line in entry["text"].split("\n") if line.strip())
        return (f"<html><head><title>{escape(entry['title'])}</title></head><body><article><h1>{escape(entry['title'])}</h1>"
                f"{paragraphs}</article></body></html>").encode()

    def install(self, server) -> None:
        from bench.http_server import respond

        def feed(request):
            xml, etag, guids = self.body()
            if request.headers.get("If-None-Match") == etag:
                self.polls.append((time.monotonic(), 304, guids))
                respond(request, 304, b"", None, {"ETag": etag})
                return
            self.polls.append((time.monotonic(), 200, guids))
            respond(request, 200, xml, "application/rss+xml; charset=utf-8", {"ETag": etag})

        def article(request):
            guid = request.path.rsplit("/", 1)[-1].removesuffix(".html")
            page = self.page(guid)
            respond(request, 200 if page else 404, page or b"not found")

        server.route("/feed.xml", feed)
        server.route("/articles/*", article)

    def first_poll_with(self, guid: str, after: float) -> float | None:
        return next((at for at, _, guids in list(self.polls) if at >= after and guid in guids), None)


def pick_texts(docs: list[dict], count: int, seed: int) -> list[dict]:
    """One article of each of `count` different topics (the seed chooses which)."""
    rng = random.Random(seed)
    by_topic: dict[int, list[dict]] = {}
    for doc in docs:
        by_topic.setdefault(doc["topic"], []).append(doc)
    topics = sorted(by_topic)
    rng.shuffle(topics)
    return [rng.choice(by_topic[topic]) for topic in topics[:count]]


def _title_and_text(doc: dict) -> tuple[str, str]:
    lines = [line.strip() for line in doc["text"].splitlines() if line.strip()]
    return lines[0][:150], "\n".join(lines[1:] or lines)


def run(args) -> dict:
    from bench.http_server import LocalServer
    from bench.receivers import WebhookReceiver

    docs = read_docs(args.data)
    rng = random.Random(args.seed)
    texts = pick_texts(docs, args.entries + 3, args.seed)
    seeds, probes = texts[:3], texts[3:]
    scratch = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    db = scratch / "latency.duckdb"
    server, receiver = LocalServer(), WebhookReceiver()
    feed = Feed(server.base_url, args.pages)
    feed.install(server)
    server.start()
    receiver.start()
    environment = {
        **os.environ,
        "NEWSWATCH_ALLOW_PRIVATE_NETWORKS": "1",
        "NEWSWATCH_FETCH_HOST_DELAY": "0",
        "NEWSWATCH_POLL_INTERVAL_MINUTES": str(args.poll_minutes),
        "NEWSWATCH_PREFECT_PORT": str(free_port()),
        "NEWSWATCH_FETCH_PAGES": "1" if args.pages else "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
    }
    environment.pop("PREFECT_API_URL", None)
    old = datetime.now(UTC) - timedelta(hours=2)
    for number, doc in enumerate(seeds):
        title, text = _title_and_text(doc)
        feed.add(f"seed-{number}", title, text, old + timedelta(minutes=number))
    service = Service("alert_latency", db, environment, args.interval, [
        ["add-feed", server.url("/feed.xml"), "--name", "Latency wire"],
        ["add-watch", "latency", "--query", PROBE, "--notify", receiver.json_url("/hook")],
    ])
    stop_watching = threading.Event()

    def watch_processes() -> None:  # every process the service starts, to check they are all gone at the end
        while not stop_watching.is_set():
            service.record_children()
            stop_watching.wait(0.5)

    watcher = threading.Thread(target=watch_processes, daemon=True)
    watcher.start()
    results, ready_seconds, error = [], None, None
    try:
        deadline = time.monotonic() + args.startup_timeout
        ready_seconds = service.wait_until_serving(args.startup_timeout)
        while len(feed.polls) < 2 and time.monotonic() < deadline + 120:  # two runs polled: settled
            time.sleep(0.2)
        settled_at = time.monotonic()
        for number, doc in enumerate(probes):
            time.sleep(rng.uniform(0, args.interval))
            guid = f"probe-{number}"
            title, text = _title_and_text(doc)
            text = f"{text}\nFiled with tag {PROBE}."
            published = datetime.now(UTC).replace(microsecond=0)
            publish_wall, publish_at = time.time(), time.monotonic()
            feed.add(guid, title, text, published)
            arrived = receiver.wait_for(number + 1, timeout=args.entry_timeout)
            if len(arrived) <= number:
                results.append({"entry": guid, "published_at": published.isoformat(), "delivered": False})
                continue
            request = arrived[number]
            payload = request.json().get("newswatch", {})
            urls = [article.get("url") for article in payload.get("articles", [])]
            polled = feed.first_poll_with(guid, publish_at)
            results.append({
                "entry": guid,
                "doc_id": doc["doc_id"],
                "published_at": published.isoformat(),
                "publish_wall": publish_wall,
                "delivered": True,
                "right_entry": any(url and url.endswith(f"/{guid}.html") for url in urls),
                "alert_kind": payload.get("kind"),
                "to_poll_s": round(polled - publish_at, 2) if polled else None,
                "poll_to_webhook_s": round(request.received_at - polled, 2) if polled else None,
                "latency_s": round(request.received_at - publish_at, 2),
            })
        time.sleep(1)
        extra = len(receiver.received) - sum(r["delivered"] for r in results)
    except BaseException as caught:  # noqa: BLE001 - report it after the service is stopped
        error, extra = caught, None
    finally:
        stop_seconds, left = service.stop()
        stop_watching.set()
        watcher.join(5)
        for pid in left:  # ours (started by the service), still there: say so and end them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stop()
        receiver.stop()
    if error is not None:
        raise error
    from warehouse.connection import open_warehouse
    from warehouse.runs import recent_runs

    with open_warehouse(db, read_only=True) as connection:
        runs = [r for r in recent_runs(connection, 10_000) if r.flow == "ingest-feeds" and r.finished_at]
    runs.sort(key=lambda r: r.started_at)
    durations = [(r.finished_at - r.started_at).total_seconds() for r in runs]
    with_news = [(r.finished_at - r.started_at).total_seconds() for r in runs if r.new_articles]
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(runs, runs[1:])]
    result = {
        "interval_s": args.interval,
        "pages": args.pages,
        "ready_s": round(ready_seconds, 1),
        "settle_s": round(settled_at - service.started, 1),
        "entries": results,
        "extra_webhooks": extra,
        "runs": len(runs),
        "run_s": _spread(durations),
        "run_with_new_article_s": _spread(with_news),
        "between_run_starts_s": _spread(gaps),
        "latency_s": _spread([r["latency_s"] for r in results if r["delivered"]]),
        "to_poll_s": _spread([r["to_poll_s"] for r in results if r.get("to_poll_s") is not None]),
        "poll_to_webhook_s": _spread([r["poll_to_webhook_s"] for r in results if r.get("poll_to_webhook_s") is not None]),
        "stop_s": round(stop_seconds, 1),
        "exit_code": service.process.returncode,
        "processes_started": len(service.seen),
        "processes_left": len(left),
    }
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    else:
        result["scratch"] = str(scratch)
    return result


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with docs.jsonl (entry texts)")
    parser.add_argument("--interval", type=float, default=10, help="seconds between scheduled runs (serve --interval)")
    parser.add_argument("--entries", type=int, default=6, help="entries to publish, one after the other")
    parser.add_argument("--poll-minutes", type=float, default=0.05, help="NEWSWATCH_POLL_INTERVAL_MINUTES")
    parser.add_argument("--pages", action="store_true", help="serve and fetch real pages (NEWSWATCH_FETCH_PAGES=1)")
    parser.add_argument("--seed", type=int, default=1, help="random pauses and texts")
    parser.add_argument("--entry-timeout", type=float, default=180, help="seconds to wait for one entry's webhook")
    parser.add_argument("--startup-timeout", type=float, default=240, help="seconds to wait for the service")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (database, serve.log)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not (args.data / "docs.jsonl").is_file():
        print(f"alert_latency: error: {args.data / 'docs.jsonl'} not found", file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"serve --interval {args.interval:g} ({'pages fetched' if args.pages else 'feed text, no pages'}): ready in "
          f"{result['ready_s']} s; {result['runs']} ingest runs; stop {result['stop_s']} s, exit {result['exit_code']}, "
          f"{result['processes_left']} of {result['processes_started']} started processes left")
    print()
    print("| entry | published | T → poll s | poll → webhook s | T → webhook s | alert | right story |")
    print("|---|---|---|---|---|---|---|")
    for r in result["entries"]:
        if not r["delivered"]:
            print(f"| {r['entry']} | {r['published_at']} | | | not delivered | | |")
            continue
        print(f"| {r['entry']} | {r['published_at'][11:19]} | {r['to_poll_s']} | {r['poll_to_webhook_s']} | "
              f"{r['latency_s']} | {r['alert_kind']} | {r['right_entry']} |")
    print()
    for key in ("latency_s", "to_poll_s", "poll_to_webhook_s", "run_s", "run_with_new_article_s", "between_run_starts_s"):
        value = result[key]
        if value:
            print(f"{key:24} min {value['min']:6.2f}  median {value['median']:6.2f}  max {value['max']:6.2f}  (n={value['n']})")
    if result["extra_webhooks"]:
        print(f"webhooks beyond one per entry: {result['extra_webhooks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
