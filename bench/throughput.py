"""End-to-end and per-stage throughput of a feed run over real article pages served locally.

The pages of an article-extraction benchmark folder (`html/*.html`, e.g.
`A1_scrapinghub_aeb/dev`) are replicated under distinct URLs up to `--articles` (each replica
gets a unique sentence, so nearly every text is new and must be embedded), listed in `--feeds`
RSS feeds on a local HTTP server on 127.0.0.1, and run through the pipeline's stages as plain
functions, as the feed flow runs them: poll (fetch feeds and pages, extract each page in a worker
process as it arrives, and, on OpenVINO, embed each article in a thread as soon as it is extracted) → prepare
→ embed the rest → dedupe and cluster → load (`--no-overlap`: embed only after polling).
It prints articles/s end to end and per stage, the embed-only ceiling (the same texts through
the embedder alone, model already loaded), a second no-op run (all feeds answer 304) as stages
and through the Prefect flow (`--no-flow`: not through the flow), the embedding backend and
device in use, and the peak RSS of the process and of its largest extraction worker. With
`--cli`, the same pages then go through `newswatch run` as people run it (`bench/cli_run.py`:
the command on a new database, timed from its start to its exit, with Prefect's temporary server
and the model load), reported beside the stages' figure and as a ratio to the embed-only ceiling.

Example:
    python bench/throughput.py --data ../shared/eval/A1_scrapinghub_aeb/dev --articles 1000 --feeds 20
    python bench/throughput.py --data ../shared/eval/A1_scrapinghub_aeb/dev --articles 1171 --feeds 10 --no-flow --cli
"""

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
from local_site import LocalSite, entry_metadata  # noqa: E402 (a sibling script module)


def replicate(folder: Path, count: int) -> dict[str, bytes]:
    """`count` pages cycling through the folder's pages, each with a unique sentence in its longest paragraph.

    The sentence goes inside the body text (not in a paragraph of its own, which extraction may
    drop), so every replica's text is new and must be embedded: no cost is hidden by reuse.
    """
    originals = [path.read_bytes() for path in sorted(folder.glob("*.html"))]
    if not originals:
        raise SystemExit(f"throughput: error: no *.html pages in {folder}")
    anchors = [_longest_paragraph_start(html) for html in originals]
    pages = {}
    for index in range(count):
        html, at = originals[index % len(originals)], anchors[index % len(originals)]
        marker = f" Bulletin {index} from the regional desk, item {index * 7919 % 100003}. ".encode()
        pages[f"{index:06d}"] = html[:at] + marker + html[at:] if at >= 0 else html + marker
    return pages


def _longest_paragraph_start(html: bytes) -> int:
    """Offset just inside the `<p>` holding the most text, or -1."""
    best, best_length = -1, 0
    for match in re.finditer(rb"<p\b[^>]*>(.*?)</p>", html, re.IGNORECASE | re.DOTALL):
        if len(match.group(1)) > best_length:
            best, best_length = match.start(1), len(match.group(1))
    return best


def children_cpu_seconds() -> float:
    """CPU seconds of this process's children that have ended (the extraction workers, once their pool is shut)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildPeakRss:
    """The largest peak RSS (VmHWM) of this process's live children, sampled twice a second.

    `RUSAGE_CHILDREN` cannot be used: a child started by fork and exec is charged the parent's
    RSS from before the exec (here the loaded model), not its own.
    """

    def __init__(self):
        self.peak_kib, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.wait(0.5):
            for children in Path("/proc/self/task").glob("*/children"):
                try:
                    pids = children.read_text().split()
                except OSError:  # the thread ended since the listing
                    continue
                for pid in pids:
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
                    if match:
                        self.peak_kib = max(self.peak_kib, int(match.group(1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding html/*.html pages")
    parser.add_argument("--articles", type=int, default=1000, help="pages to serve and ingest")
    parser.add_argument("--feeds", type=int, default=20, help="feeds the pages are spread over")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the embed-only measurement")
    parser.add_argument("--no-overlap", action="store_true", help="embed only after every page is extracted")
    parser.add_argument("--host-delay", type=float, default=0.0,
                        help="seconds between two requests to the (one) local host, as polite fetching waits")
    parser.add_argument("--no-flow", action="store_true", help="skip the no-op run through the Prefect flow")
    parser.add_argument(
        "--cli", action="store_true",
        help="then `newswatch run` on the same pages as people run it (bench/cli_run.py: the command, start to exit, "
             "on a new database), reported beside the stages' figure",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--feed-metadata", action="store_true",
        help="the feed entries give each page's title, date and author, as publishers' feeds do (read from the pages first)",
    )
    args = parser.parse_args(argv)
    html_folder = args.data / "html" if (args.data / "html").is_dir() else args.data
    pages = replicate(html_folder, args.articles)

    from flows import embedding, pipeline
    from flows.polling import extract_articles, extraction_pool, extraction_workers, fetch_policy, poll
    from flows.settings import Settings
    from warehouse.connection import open_warehouse
    from warehouse.feeds import add_feed, due_feeds
    from warehouse.lookups import stored_urls

    settings = Settings(
        allow_private_networks=True, fetch_host_delay=args.host_delay, fetch_host_concurrency=16, fetch_concurrency=32,
        respect_robots=False,
    )
    embedder = embedding.get_embedder(settings)
    started = time.perf_counter()
    embedder.load()
    model_seconds = time.perf_counter() - started
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds per stage: this process's (every thread), and the workers'
    prefetched_counts: list[int] = []
    whole_counts: list[int] = []  # whole-article vectors a verdict needed, per run

    def timed(name, function, *args_, **kwargs):
        began, began_cpu = time.perf_counter(), time.process_time()
        value = function(*args_, **kwargs)
        stages[name] = time.perf_counter() - began
        cpu[name] = time.process_time() - began_cpu
        return value

    entries = entry_metadata(pages) if args.feed_metadata else None
    with LocalSite(pages, args.feeds, entries) as site, tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "throughput.duckdb"
        with open_warehouse(db) as connection:
            for url in site.feed_urls:
                add_feed(connection, url, None, datetime.now(UTC))

        def is_stored(urls):
            with open_warehouse(db) as connection:
                return stored_urls(connection, urls)

        def run_once():
            with open_warehouse(db) as connection:
                feeds = due_feeds(connection, datetime.now(UTC) + timedelta(days=1))
            # As the flow does: pages are extracted in worker processes while others are fetched,
            # and each article is embedded in a thread as soon as it is extracted.
            prefetch = None if args.no_overlap else embedding.EmbeddingPrefetch(db, settings)
            on_article = (lambda item: prefetch.add(item.article.text)) if prefetch else None
            workers_before = children_cpu_seconds()
            with extraction_pool(extraction_workers(settings.extract_workers)) as extractor:
                polled = timed("fetch+extract" + ("+embed" if prefetch else ""), lambda: asyncio.run(poll(
                    feeds, fetch_policy(settings), timedelta(minutes=15), is_stored, extractor=extractor,
                    on_article=on_article)))
            cpu["extraction workers"] = children_cpu_seconds() - workers_before
            prefetched = timed("embed, waiting", prefetch.finish) if prefetch else {}
            prefetched_counts.append(len(prefetched))
            if polled.articles is not None:
                extracted = polled.articles
            else:
                extracted, _ = timed("extract", extract_articles, polled.pages)
            ingested_at = datetime.now(UTC)
            prepared, _ = timed("prepare", pipeline.prepare_articles, [a.article for a in extracted], db, ingested_at, settings)
            embeddings = timed("embed, rest", pipeline.embed_articles, prepared, db, settings, prefetched=prefetched)
            verdicts = timed("dedupe+cluster", pipeline.dedupe_and_cluster, prepared, db, settings)
            whole_counts.append(len(verdicts.embeddings))
            fetched = {item.article.url: item for item in extracted}
            batch = pipeline.build_load_batch(prepared, verdicts, embeddings, "feeds", ingested_at, fetched)
            batch.feed_outcomes, batch.fetch_failures = polled.outcomes, polled.failures
            result = timed("load", pipeline.load, batch, db, settings)
            return polled, prepared, result

        started = time.perf_counter()
        with ChildPeakRss() as workers:  # the extraction workers (Prefect has not started yet)
            polled, prepared, loaded = run_once()
        total = time.perf_counter() - started
        worker_rss = workers.peak_kib / 1024
        first_stages, first_cpu = dict(stages), dict(cpu)
        # The texts the run had to embed: each distinct text once (a replica whose marker sentence
        # extraction dropped repeats another's text, and the pipeline embeds a text only once).
        texts = list(dict.fromkeys(item.article.text for item in prepared))

        # The ceiling: the same texts through the embedder alone, before Prefect's temporary
        # server (started below) competes for the CPU; as articles/s over all stored articles.
        ceiling = ceiling_cpu = None
        if not args.no_ceiling and texts:
            started, started_cpu = time.perf_counter(), time.process_time()
            embedding.embed_texts(texts, settings)  # everyday vectors: the leads when NEWSWATCH_EMBED_LEAD_CHUNKS is set
            ceiling = len(prepared) / (time.perf_counter() - started)
            ceiling_cpu = (time.process_time() - started_cpu) / len(texts)

        started = time.perf_counter()
        second, _, _ = run_once()
        noop_seconds = time.perf_counter() - started

        # The same no-op through the Prefect flow, timed after Prefect's start-up (its first call).
        flow_first_seconds = flow_noop_seconds = flow_noop_not_modified = None
        if not args.no_flow:
            from flows.ingest import ingest_feeds

            due_now = settings.model_copy(update={"poll_interval_minutes": 1e-6})
            with open_warehouse(db) as connection:
                connection.execute("UPDATE feeds SET next_due_at = now()")
            started = time.perf_counter()
            ingest_feeds(db, due_now)
            flow_first_seconds = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            flow_noop_not_modified = ingest_feeds(db, due_now).not_modified
            flow_noop_seconds = round(time.perf_counter() - started, 2)

    articles = loaded.articles
    result = {
        "articles_served": len(pages),
        "feeds": args.feeds,
        "articles_stored": articles,
        "duplicates": loaded.duplicates,
        "fetch_failures": len(polled.failures),
        "embedding": f"{embedder.backend_in_use} on {embedder.device_in_use}",
        "feed_metadata": bool(args.feed_metadata),
        "extraction_workers": extraction_workers(settings.extract_workers),
        "model_load_seconds": round(model_seconds, 1),
        "end_to_end_seconds": round(total, 1),
        "end_to_end_articles_per_second": round(articles / total, 1),
        "stages": {
            name: {"seconds": round(seconds, 2), "articles_per_second": round(articles / seconds, 1) if seconds else None}
            for name, seconds in first_stages.items()
        },
        # CPU ms per stored article: the workers' (extraction, with their start-up) and this
        # process's per stage (fetching, feed parsing and the embedding thread share the first).
        "cpu_ms_per_article": {name: round(1000 * seconds / articles, 1) for name, seconds in first_cpu.items()},
        "embed_only_cpu_ms_per_text": round(1000 * ceiling_cpu, 1) if ceiling_cpu else None,
        "distinct_texts": len(texts),
        "texts_embedded_while_fetching": prefetched_counts[0],
        "lead_chunks": embedding.lead_chunks(settings),
        "whole_vectors_a_verdict_needed": whole_counts[0],
        "embed_only_articles_per_second": round(ceiling, 1) if ceiling else None,
        "pipeline_to_ceiling_ratio": round(articles / total / ceiling, 2) if ceiling else None,
        "noop_run_seconds": round(noop_seconds, 2),
        "noop_not_modified": second.not_modified,
        "flow_noop_first_call_seconds_with_prefect_start": flow_first_seconds,
        "flow_noop_seconds": flow_noop_seconds,
        "flow_noop_not_modified": flow_noop_not_modified,
        "peak_rss_mib": round(peak_rss_mib()),
        "peak_rss_mib_largest_worker": round(worker_rss),
    }
    if args.cli:  # the same pages through the command, in a process of its own, after this one's work
        from argparse import Namespace

        import cli_run

        # The command's own peak, sampled (RUSAGE_CHILDREN would charge it this process's RSS at the fork).
        with tempfile.TemporaryDirectory() as scratch, ChildPeakRss() as command_rss:
            command = cli_run.feed_run(
                Namespace(data=args.data, articles=args.articles, feeds=args.feeds, log=None, noop=0), Path(scratch)
            )
        result["cli_articles_stored"] = command["articles_stored"]
        result["cli_wall_seconds"] = command["wall_seconds"]
        result["cli_end_to_end_articles_per_second"] = command["articles_per_second"]
        result["cli_to_ceiling_ratio"] = round(command["articles_per_second"] / ceiling, 2) if ceiling else None
        result["cli_peak_rss_mib"] = round(command_rss.peak_kib / 1024)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key == "cpu_ms_per_article":
                for name, ms in value.items():
                    print(f"  cpu {name:20} {ms:8.1f} ms/article")
            elif key == "stages":
                for name, numbers in value.items():
                    print(f"  {name:16} {numbers['seconds']:8.2f} s  {numbers['articles_per_second']} articles/s")
            else:
                print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
