"""The HTTP API under load: latency and throughput of `newswatch api` over N stored articles, with and without a run writing.

For each of `--sizes`, a warehouse of synthetic articles is built once in a process of its own
and kept in `--work` (or `--db` names a warehouse to measure instead):

- texts, titles, people and stories of `bench/search_scale.py`'s corpus (Zipf vocabulary of
  made-up words, stories of geometric size with a mean of about 4 articles naming one to three
  rare people), seen over the 90 days up to the build, from 40 feeds; one article in twenty after
  the first of its story is stored as a duplicate of that first one;
- vectors made as `bench/history_scale.py` makes them (a shared news direction, the story's topic,
  the story, noise: cosine about 0.7 within a story), stored under the pipeline's model key;
- rows written with `history_scale`'s Arrow insert (the `articles`, `embeddings` and
  `article_terms` tables, by name), feeds with `warehouse.feeds.add_feed`; then the full-text index
  built by `flows.search.sync_search_index` and the vector index by
  `warehouse.vector_index.VectorIndex`, as runs build them.

Then the real API, `newswatch api --db DB --port PORT` in a subprocess on 127.0.0.1 and a free
port, is measured with `--clients` concurrent clients (threads, each with its own keep-alive
httpx client, sending its next request when the last one is answered) for `--seconds` per
endpoint:

- `GET /stories`: the first page (50 stories); `GET /stories?cursor=…`: pages 2 to 21 of it;
- `GET /stories/{id}`: 2,000 stories drawn at random;
- `GET /search?q=…`: the keyword mix of `bench/search_scale.py` (a name, two names, phrases, OR,
  NOT, common and rare words; every other one with `since=7d`);
- `GET /search?q=…&semantic=true`: short descriptions, embedded by the bundled model.

Three conditions: one client (the cost of a request without queueing), `--clients` clients with
nothing else running, then, on a copy of the warehouse (with its indexes) and a fresh API, the
same while a writer runs `newswatch run --fixtures DIR` again and again, each time on
`--writer-articles` new article files of the same corpus: a feed run, which holds the file
read-write while it decides and loads. A request that waited longer than
`NEWSWATCH_API_LOCK_WAIT_SECONDS` for the file is answered 503; 503s and any other 5xx are counted
apart. Latencies are over every answer (a 503 included), measured by the client from sending to
the whole body read; the clients run on the same machine as the API and the writer.

Target (issue #28): p95 under 100 ms for each endpoint while no run holds the file.

Example:
    python bench/api_load.py --sizes 100000 1000000 --work /tmp/api-load
    python bench/api_load.py --sizes 100000 --clients 20 --seconds 20 --writer-seconds 60 --json
    python bench/api_load.py --db newswatch.duckdb --no-writer
"""

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

# Sibling scripts: the corpus and its query mix, the vectors and the Arrow insert.
from history_scale import DIMENSIONS, WEIGHTS, World, _insert, _unit, article_id  # noqa: E402
from search_scale import CHUNK, Corpus, percentile  # noqa: E402
from search_scale import NOW as CORPUS_NOW  # noqa: E402

FEEDS = 40
DUPLICATE_SHARE = 0.05
P95_TARGET_MS = 100
STORY_SAMPLE = 2000
CURSOR_PAGES = 20
ENDPOINTS = ("stories", "stories_cursor", "story", "search", "search_semantic")
COMMAND = [sys.executable, "-m", "flows.cli"]


# --- the warehouse -------------------------------------------------------------------------------

def feed_urls() -> list[tuple[str, str]]:
    """(feed URL, name) of the synthetic feeds; article URLs are on the same hosts."""
    return [(f"https://news{number:02d}.example/feed.xml", f"News {number:02d}") for number in range(FEEDS)]


def build(db: Path, size: int, seed: int) -> dict:
    """Write `size` synthetic articles, then the full-text and vector indexes, to a fresh warehouse."""
    import pyarrow as pa

    from flows.embedding import embedding_model_key, whole_model_key
    from flows.search import sync_search_index
    from flows.settings import Settings
    from warehouse.connection import open_warehouse
    from warehouse.feeds import add_feed, feed_id_for
    from warehouse.vector_index import VectorIndex

    settings = Settings(db=db)
    model = embedding_model_key(settings)
    corpus, world = Corpus(seed), World(seed)
    # The corpus's 90 days end at the build's hour, so the latest stories are this week's.
    built_at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    shift = built_at - CORPUS_NOW
    feeds = feed_urls()
    feed_ids = [feed_id_for(url) for url, _ in feeds]
    started = time.perf_counter()
    stories = 0
    with open_warehouse(db) as connection:
        for url, name in feeds:
            add_feed(connection, url, name, built_at - timedelta(days=91))
        first = 0
        for chunk in corpus.chunks(size):
            rng = np.random.default_rng([seed, 5, first])
            labels = np.array([int(document.story_id.removeprefix("story-")) for document in chunk])
            unique, inverse = np.unique(labels, return_inverse=True)
            stories += len(unique)
            shared, topic, own, noise = WEIGHTS
            vectors = _unit(
                shared * world.shared
                + topic * world.topics[[world.topic_of(int(story)) for story in unique]][inverse]
                + own * np.stack([world.story_vector(int(story)) for story in unique])[inverse]
                + noise * _unit(rng.standard_normal((len(chunk), DIMENSIONS)))
            ).astype(np.float32)
            duplicate_draw = rng.random(len(chunk))
            rows, term_rows, first_of = [], [], {}
            for offset, document in enumerate(chunk):
                index = first + offset
                identifier = article_id(index)
                feed = index % FEEDS
                url = f"https://news{feed:02d}.example/{index}"
                story_first = first_of.setdefault(document.story_id, identifier)
                duplicate = identifier != story_first and duplicate_draw[offset] < DUPLICATE_SHARE
                rows.append({
                    "article_id": identifier, "url": url, "canonical_url": url, "title": document.title,
                    "published_at": document.seen_at + shift, "ingested_at": document.ingested_at + shift,
                    "text": document.text,
                    "text_hash": hashlib.sha256(document.text.encode("utf-8")).hexdigest(),
                    "language": "en", "source": "feed", "feed_id": feed_ids[feed], "text_source": "page",
                    "duplicate_of": story_first if duplicate else None,
                    "duplicate_kind": "near" if duplicate else None,
                    "duplicate_similarity": 0.96 if duplicate else None,
                    "story_id": story_first,
                    "story_similarity": None if identifier == story_first else 0.72,
                })
                people = corpus.story_people(int(labels[offset]))
                term_rows.extend((identifier, name.lower()) for person in people for name in person)
            _insert(connection, rows, [vectors.ravel()], term_rows, model, pa)
            first += len(chunk)
        connection.execute(
            "INSERT INTO terms SELECT term, count(*) FROM article_terms GROUP BY term "
            "ON CONFLICT (term) DO UPDATE SET document_count = excluded.document_count"
        ).fetchall()
        connection.execute("CHECKPOINT").fetchall()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    sync_search_index(db, settings)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    with open_warehouse(db) as connection:
        index = VectorIndex(
            db, model, DIMENSIONS, exact_limit=settings.vector_index_exact_limit,
            search_depth=settings.vector_index_search_depth, fallback_model=whole_model_key(settings),
        )
        index.sync(connection)
        index.save()
    vector_s = time.perf_counter() - started
    return {
        "articles": first, "stories": stories, "load_s": round(load_s, 1), "search_index_s": round(search_s, 1),
        "vector_index_s": round(vector_s, 1), "build_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def warehouse_files(db: Path) -> list[Path]:
    """The DuckDB file and what lives beside it (the search and vector indexes), without the lock files."""
    return [path for path in db.parent.glob(db.name + "*") if not path.name.endswith(".lock")]


def files_mib(db: Path) -> dict:
    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size

    return {path.name.removeprefix(db.name) or "duckdb": round(size(path) / 2**20) for path in warehouse_files(db)}


def copy_warehouse(db: Path, target: Path) -> None:
    """A copy of the warehouse with its indexes, for a writer to change."""
    for path in warehouse_files(target):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in warehouse_files(db):
        destination = target.parent / (target.name + path.name.removeprefix(db.name))
        command = ["cp", "-r", "--reflink=auto", str(path), str(destination)]
        subprocess.run(command, check=True)


# --- the API and its clients ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment() -> dict:
    # A run's temporary Prefect server may take longer than Prefect's 20 s to start on two busy
    # cores; the CI gives it 120 s too (.ci/run).
    return {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", **os.environ,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}


class Api:
    """`newswatch api` on a free loopback port, its log in a file."""

    def __init__(self, db: Path, log: Path):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [*COMMAND, "api", "--db", str(db), "--port", str(self.port)], cwd=ROOT, env=environment(),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"newswatch api exited ({self.process.returncode}): {log.read_text()[-800:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).json().get("database") == "ok":
                    return
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"newswatch api did not answer in 120 s: {log.read_text()[-800:]}")
            time.sleep(0.3)

    def peak_rss_mib(self) -> int | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        return next((round(int(line.split()[1]) / 1024) for line in status.splitlines() if line.startswith("VmHWM:")), None)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Requests:
    """The paths each endpoint is asked for: drawn at random, per client, from fixed lists."""

    def __init__(self, api_url: str, db: Path, size: int, seed: int):
        import httpx

        from warehouse.connection import open_warehouse

        with open_warehouse(db, read_only=True) as connection:
            self.story_ids = [row[0] for row in connection.execute(
                f"SELECT DISTINCT story_id FROM (SELECT story_id FROM articles USING SAMPLE {STORY_SAMPLE} ROWS (reservoir, {seed}))"
            ).fetchall()]
        corpus = Corpus(seed)
        self.keyword = []
        for _, text, with_since in corpus.queries(240, size):
            self.keyword.append("/search?" + urlencode({"q": text, **({"since": "7d"} if with_since else {})}))
        rng = np.random.default_rng([seed, 6])
        self.semantic = []
        for _ in range(60):
            first_name, last_name = corpus.people[int(rng.integers(0, len(corpus.people)))]
            words = " ".join(corpus.words[int(i)] for i in rng.integers(20, 3000, 6))
            self.semantic.append("/search?" + urlencode({"q": f"{first_name} {last_name} {words}", "semantic": "true"}))
        # The cursors of pages 2 to 21 of the default listing, walked once now.
        self.cursors = []
        with httpx.Client(base_url=api_url, timeout=120) as http:
            cursor = None
            for _ in range(CURSOR_PAGES):
                page = http.get("/stories", params={"cursor": cursor} if cursor else None).raise_for_status().json()
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                self.cursors.append(cursor)

    def path(self, endpoint: str, rng: random.Random) -> str:
        if endpoint == "stories":
            return "/stories"
        if endpoint == "stories_cursor":
            return "/stories?" + urlencode({"cursor": rng.choice(self.cursors)})
        if endpoint == "story":
            return f"/stories/{rng.choice(self.story_ids)}"
        if endpoint == "search":
            return rng.choice(self.keyword)
        return rng.choice(self.semantic)


def machine_cpu() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hammer(api: "Api", requests: Requests, endpoint: str, clients: int, seconds: float, seed: int) -> dict:
    """`clients` threads asking for `endpoint` back to back for `seconds`; latency and status of every answer.

    Also the CPU time per request of the API process and of these clients (this process).
    """
    import httpx

    api_url = api.url

    answers: list[tuple[float, int]] = []
    details: dict[int, str] = {}  # the first error message of each status
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        mine = []
        with httpx.Client(base_url=api_url, timeout=300) as http:
            while time.monotonic() < stop_at:
                path = requests.path(endpoint, rng)
                begun = time.perf_counter()
                try:
                    response = http.get(path)
                    status = response.status_code
                    if status >= 300 and status not in details:
                        details[status] = response.text[:300]
                except httpx.HTTPError as error:
                    status = 0  # no answer
                    details.setdefault(0, str(error)[:300])
                mine.append(((time.perf_counter() - begun) * 1000, status))
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    api_cpu, own, machine = cpu_seconds(api.process.pid), resource.getrusage(resource.RUSAGE_SELF), machine_cpu()
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - begun
    api_cpu = cpu_seconds(api.process.pid) - api_cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
    total, idle = (now - before for now, before in zip(machine_cpu(), machine))
    cores = os.cpu_count() or 1
    latencies = sorted(latency for latency, _ in answers)
    statuses = [status for _, status in answers]
    return {
        "requests": len(answers),
        "per_s": round(len(answers) / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "ok": sum(1 for status in statuses if 200 <= status < 300),
        "503": statuses.count(503),
        "other_5xx": sum(1 for status in statuses if status >= 500 and status != 503),
        "other": sum(1 for status in statuses if not 200 <= status < 300 and status < 500),
        "api_cpu_ms": round(api_cpu * 1000 / max(len(answers), 1), 1),
        "client_cpu_ms": round(client_cpu * 1000 / max(len(answers), 1), 1),
        # How busy the machine's cores were, and the share of that not used by the API or the clients
        # (the writer, or anything else running on the machine).
        "errors": {str(status): detail for status, detail in sorted(details.items())},
        "machine_busy_pct": round(100 * (1 - idle / max(total, 1)), 0),
        "others_cpu_pct": round(max(0.0, 100 * (1 - idle / max(total, 1)) - 100 * (api_cpu + client_cpu) / (wall * cores)), 0),
    }


def warm_up(api_url: str, requests: Requests) -> None:
    """A few requests of each kind first (the first semantic search loads the model)."""
    import httpx

    rng = random.Random(0)
    with httpx.Client(base_url=api_url, timeout=600) as http:
        for endpoint in ENDPOINTS:
            for _ in range(5):
                http.get(requests.path(endpoint, rng))


# --- the writer ----------------------------------------------------------------------------------

class Writer:
    """`newswatch run --fixtures DIR` over and over on `db`, each run on new article files, until stopped."""

    def __init__(self, db: Path, folder: Path, size: int, per_run: int, seed: int):
        self.db, self.folder, self.per_run = db, folder, per_run
        self.corpus = Corpus(seed)
        self.next_article = size + 1_000_000  # past the stored ones: new articles of new stories
        self.runs: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._thread.start()

    def _files(self, number: int) -> Path:
        folder = self.folder / f"run-{number:03d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        # The corpus makes articles in blocks of CHUNK; the next ones are taken from the block they are in.
        first = self.next_article - self.next_article % CHUNK
        start = self.next_article - first
        if start + self.per_run > CHUNK:
            self.next_article = first + CHUNK
            return self._files(number)
        chunk = self.corpus._chunk(first, first + CHUNK)
        for offset, document in enumerate(chunk[start:start + self.per_run]):
            (folder / f"{offset:04d}.txt").write_text(f"{document.title}\n\n{document.text}\n", encoding="utf-8")
        self.next_article += self.per_run
        return folder

    def _loop(self) -> None:
        number = 0
        while not self._stop.is_set():
            folder = self._files(number)
            begun = time.perf_counter()
            with (self.folder / f"run-{number:03d}.log").open("w") as log:
                self.process = subprocess.Popen(
                    [*COMMAND, "run", "--fixtures", str(folder), "--db", str(self.db)], cwd=ROOT, env=environment(),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
                code = self.process.wait()
            output = (self.folder / f"run-{number:03d}.log").read_text(errors="replace").strip().splitlines()
            summary = next((line for line in output if line.startswith(("read ", "newswatch: error:"))), None)
            summary = summary or next((line for line in reversed(output) if "Error" in line), output[-1] if output else "")
            self.runs.append({"seconds": round(time.perf_counter() - begun, 1), "exit": code, "summary": summary[:200]})
            number += 1

    def stop(self) -> None:
        """Stop after the run in progress has finished (a run is never cut short)."""
        self._stop.set()
        self._thread.join()


# --- one size ------------------------------------------------------------------------------------

def measure(db: Path, size: int, args, work: Path, label: str) -> dict:
    """The three conditions on one warehouse."""
    result: dict = {"conditions": {}}
    api = Api(db, work / f"api-{label}.log")
    try:
        requests = Requests(api.url, db, size, args.seed)
        warm_up(api.url, requests)
        for name, clients, seconds in (("1 client", 1, args.seconds / 2), (f"{args.clients} clients", args.clients, args.seconds)):
            result["conditions"][name] = {
                endpoint: hammer(api, requests, endpoint, clients, seconds, args.seed) for endpoint in ENDPOINTS
            }
            report(f"{size:,} articles", name, result["conditions"][name], args.json)
        result["api_peak_rss_mib"] = api.peak_rss_mib()
    finally:
        api.stop()
    if args.no_writer:
        return result

    copy = work / f"writer-{label}.duckdb"
    copy_warehouse(db, copy)
    api = Api(copy, work / f"api-{label}-writer.log")
    writer = Writer(copy, work / f"writer-{label}-runs", size, args.writer_articles, args.seed)
    try:
        requests = Requests(api.url, copy, size, args.seed)
        warm_up(api.url, requests)
        writer.start()
        name = f"{args.clients} clients, run writing"
        result["conditions"][name] = {
            endpoint: hammer(api, requests, endpoint, args.clients, args.writer_seconds, args.seed) for endpoint in ENDPOINTS
        }
        writer.stop()
        report(f"{size:,} articles", name, result["conditions"][name], args.json)
        result["writer_runs"] = writer.runs
        result["writer_api_peak_rss_mib"] = api.peak_rss_mib()
        if not args.json:
            for run in writer.runs:
                print(f"    writer run: {run['seconds']} s, exit {run['exit']}: {run['summary']}", flush=True)
    finally:
        writer._stop.set()
        if writer.process is not None and writer.process.poll() is None:
            writer.process.wait()
        api.stop()
        if not args.keep_copies:
            for path in warehouse_files(copy):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return result


def report(label: str, condition: str, figures: dict, as_json: bool) -> None:
    if as_json:
        return
    print(f"{label}, {condition}:", flush=True)
    print(f"    {'endpoint':<16} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'503':>5} {'5xx':>4} "
          f"{'other':>5} {'API CPU ms/req':>15} {'client CPU ms/req':>18} {'others CPU %':>13}")
    for endpoint, value in figures.items():
        print(f"    {endpoint:<16} {value['requests']:>8} {value['per_s']:>7} {value['p50_ms']:>8} {value['p95_ms']:>8} "
              f"{value['max_ms']:>8} {value['503']:>5} {value['other_5xx']:>4} {value['other']:>5} "
              f"{value['api_cpu_ms']:>15} {value['client_cpu_ms']:>18} {value['others_cpu_pct']:>13}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="stored articles")
    parser.add_argument("--db", type=Path, help="measure this warehouse (with its indexes) instead of building one")
    parser.add_argument("--work", type=Path, default=Path("/tmp/newswatch-api-load"), help="built warehouses are kept here")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20, help="per endpoint, without a writer")
    parser.add_argument("--writer-seconds", type=float, default=60, help="per endpoint, while the writer runs")
    parser.add_argument("--writer-articles", type=int, default=50, help="new article files per writer run")
    parser.add_argument("--no-writer", action="store_true", help="leave out the condition with a run writing")
    parser.add_argument("--keep-copies", action="store_true", help="keep the warehouse copies the writer changed")
    parser.add_argument("--build-only", action="store_true", help="build the warehouses that are missing, measure nothing")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size only")
    parser.add_argument("--step", choices=["build"], help=argparse.SUPPRESS)  # internal: build one size here
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)

    if args.step == "build":
        print(json.dumps(build(args.db, args.sizes[0], args.seed)))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    targets = [(args.db.resolve(), None)] if args.db else [(args.work / f"api-{size}.duckdb", size) for size in args.sizes]
    for db, size in targets:
        info: dict = {"db": str(db)}
        if size is not None and not db.exists():
            partial = db.with_name(db.name + ".partial")
            for path in warehouse_files(partial):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            output = subprocess.run(
                [sys.executable, __file__, "--step", "build", "--db", str(partial), "--sizes", str(size), "--seed", str(args.seed)],
                check=True, capture_output=True, text=True,
            ).stdout
            info["build"] = json.loads(output.strip().splitlines()[-1])
            for path in warehouse_files(partial):
                path.rename(db.parent / (db.name + path.name.removeprefix(partial.name)))
        if args.build_only:
            print(json.dumps(info), flush=True)
            continue
        from warehouse.connection import open_warehouse

        with open_warehouse(db, read_only=True) as connection:
            info["articles"], info["stories"] = connection.execute(
                "SELECT count(*), count(DISTINCT story_id) FROM articles"
            ).fetchone()
        info["files_mib"] = files_mib(db)
        info["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        label = f"{info['articles']:,} articles"
        if not args.json:
            print(f"{label}: {info.get('build', 'built before')}; files {info['files_mib']} MiB", flush=True)
        info |= measure(db, info["articles"], args, args.work, str(info["articles"]))
        busy = info["conditions"][f"{args.clients} clients"]
        info["meets_p95_target"] = {endpoint: figures["p95_ms"] < P95_TARGET_MS for endpoint, figures in busy.items()}
        if args.json:
            print(json.dumps(info, default=str), flush=True)
        else:
            missed = [endpoint for endpoint, met in info["meets_p95_target"].items() if not met]
            print(f"    p95 < {P95_TARGET_MS} ms with {args.clients} clients and no writer: "
                  + ("every endpoint" if not missed else "missed by " + ", ".join(missed)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
