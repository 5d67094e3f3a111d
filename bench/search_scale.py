"""Full-text search at scale: build time, disk size, query latency and memory of `SearchIndex`.

For each of `--sizes`, a synthetic news corpus is generated (deterministically, seeded, streamed
in chunks so a million articles never sit in memory) and indexed by `SearchIndex` in a process of
its own; then, in a second fresh process (like a dashboard opening the index read-only), a fixed
mix of `--queries` queries of the real syntax is run twice with limit 50: once to warm up, once
timed. Each process's peak RSS is reported (`ru_maxrss`; it includes the index files tantivy
maps into memory and touches).

The corpus:

- a vocabulary of 30,000 made-up words drawn with a Zipf distribution (p ∝ 1/rank^1.05), so a
  few words are in nearly every article and most are rare;
- 4,000 rare people, "Firstname Lastname" made-up names; each story (geometric size, mean
  about 4 articles) is about one to three of them, named in the title and a few times in the text;
- titles of about 10 words, texts of 150-300 words, seen over 90 days.

The query mix (fixed by `--seed`): common and rare single words, a person's last name, two
people of one story (AND), a person's full name as a phrase, a phrase of two very common words
(the costly case: long position lists), OR groups, NOT, each with and without `since` (the last 7
days). Targets: p95 under 100 ms at 1M articles, peak RSS under 2 GiB.

Example:
    python bench/search_scale.py --sizes 100000 1000000 --queries 240
    python bench/search_scale.py --sizes 100000 --keep /tmp/search-scale --json
"""

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract.query import parse_query  # noqa: E402
from extract.search_index import WRITER_HEAP_BYTES, WRITER_THREADS, SearchDocument, SearchIndex  # noqa: E402

VOCABULARY = 30_000
PEOPLE = 4_000
ZIPF_EXPONENT = 1.05
DAYS = 90
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
CHUNK = 10_000
P95_TARGET_MS = 100
RSS_TARGET_MIB = 2048
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"] + ["qu", "sh", "th", "ch", "st"]


def made_up_words(count: int, seed: int, syllables: tuple[int, int]) -> list[str]:
    """Distinct pronounceable made-up words."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    seen = set()
    while len(words) < count:
        word = "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), rng.integers(*syllables)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Corpus:
    """A deterministic synthetic news corpus; article i is always the same article."""

    def __init__(self, seed: int = 7):
        self.seed = seed
        self.words = made_up_words(VOCABULARY, seed, (1, 4))
        self.word_array = np.array(self.words, dtype=object)
        names = made_up_words(2 * PEOPLE, seed + 1, (2, 4))
        self.people = [(names[2 * i].title(), names[2 * i + 1].title()) for i in range(PEOPLE)]
        weights = 1 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
        self.word_cdf = np.cumsum(weights) / weights.sum()

    @lru_cache(maxsize=8192)
    def story_people(self, story: int) -> list[tuple[str, str]]:
        """The one to three people a story is about."""
        rng = np.random.default_rng([self.seed, 1, story])
        return [self.people[i] for i in rng.choice(PEOPLE, rng.integers(1, 4), replace=False)]

    def chunks(self, count: int):
        """Lists of SearchDocuments, CHUNK at a time, for articles 0..count-1."""
        for first in range(0, count, CHUNK):
            yield self._chunk(first, min(first + CHUNK, count))

    def _chunk(self, first: int, end: int) -> list[SearchDocument]:
        rng = np.random.default_rng([self.seed, 2, first])
        size = end - first
        # Stories of geometric size (mean about 4): a new story starts with probability 1/4.
        stories = first * 4 + np.cumsum(rng.random(size) < 0.25)
        title_lengths = rng.integers(7, 14, size)
        text_lengths = rng.integers(150, 301, size)
        draws = np.searchsorted(self.word_cdf, rng.random(int(title_lengths.sum() + text_lengths.sum())))
        tokens = self.word_array[draws].tolist()
        seconds = rng.integers(0, DAYS * 86_400, size)
        documents = []
        cursor = 0
        for offset in range(size):
            story = int(stories[offset])
            people = self.story_people(story)
            title = tokens[cursor:cursor + title_lengths[offset]]
            cursor += title_lengths[offset]
            text = tokens[cursor:cursor + text_lengths[offset]]
            cursor += text_lengths[offset]
            first_name, last_name = people[0]
            title.insert(int(rng.integers(0, len(title))), f"{first_name} {last_name}")
            for first_name, last_name in people:
                for _ in range(int(rng.integers(1, 4))):
                    text.insert(int(rng.integers(0, len(text))), f"{first_name} {last_name}")
                text.insert(int(rng.integers(0, len(text))), last_name)
            seen_at = NOW - timedelta(seconds=int(seconds[offset]))
            documents.append(SearchDocument(
                article_id=f"{first + offset:012x}", story_id=f"story-{story:010d}",
                title=_sentence_case(" ".join(title)), text=_sentence_case(" ".join(text)) + ".",
                seen_at=seen_at, ingested_at=seen_at + timedelta(minutes=5),
            ))
        return documents

    def queries(self, count: int, articles: int) -> list[tuple[str, str, bool]]:
        """(kind, query text, with `since`) for a fixed mix of query shapes."""
        rng = np.random.default_rng([self.seed, 3])
        stories = max(articles // 4, 1)
        common = lambda: self.words[int(rng.integers(20, 2_000))]  # noqa: E731
        rare = lambda: self.words[int(rng.integers(5_000, VOCABULARY))]  # noqa: E731
        very_common = lambda: self.words[int(rng.integers(0, 30))]  # noqa: E731

        def person() -> tuple[str, str]:
            return self.story_people(int(rng.integers(0, stories)))[0]

        def two_people() -> str:
            while True:
                people = self.story_people(int(rng.integers(0, stories)))
                if len(people) > 1:
                    return f"{people[0][1]} {people[1][1]}"

        shapes = [
            ("common word", common),
            ("rare word", rare),
            ("last name", lambda: person()[1]),
            ("two people AND", two_people),
            ("name phrase", lambda: '"{} {}"'.format(*person())),
            ("common phrase", lambda: f'"{very_common()} {very_common()}"'),
            ("OR group", lambda: f"({person()[1]} OR {person()[1]} OR {rare()}) {common()}"),
            ("NOT", lambda: f"{person()[1]} NOT {common()}"),
            ("words AND", lambda: f"{common()} {common()} {rare()}"),
            ("phrase OR word", lambda: '"{} {}" OR {}'.format(*person(), rare())),
        ]
        queries = []
        for number in range(count):
            kind, make = shapes[number % len(shapes)]
            queries.append((kind, make(), (number // len(shapes)) % 2 == 1))
        return queries


def _sentence_case(text: str) -> str:
    """Upper-case the first letter only (str.capitalize would lower-case the names)."""
    return text[:1].upper() + text[1:]


def peak_rss_mib() -> int:
    """This process's peak resident memory (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build(folder: Path, count: int, seed: int, commit_every: int, threads: int, heap_mb: int) -> dict:
    """Index `count` synthetic articles into `folder` (a fresh one)."""
    shutil.rmtree(folder, ignore_errors=True)
    corpus = Corpus(seed)
    generate_s = 0.0
    started = time.perf_counter()
    with SearchIndex(folder, writer_threads=threads, writer_heap_bytes=heap_mb * 1_000_000) as index:
        since_commit = 0
        chunks = corpus.chunks(count)
        while True:
            generated = time.perf_counter()
            chunk = next(chunks, None)
            generate_s += time.perf_counter() - generated
            if chunk is None:
                break
            index.add(chunk)
            since_commit += len(chunk)
            if since_commit >= commit_every:
                index.commit()
                since_commit = 0
        index.commit()
        documents = index.count()
    # Leaving the `with` waited for tantivy's background merges, part of the cost of a build.
    total_s = time.perf_counter() - started
    return {
        "articles": documents, "build_s": round(total_s - generate_s, 1), "generate_s": round(generate_s, 1),
        "disk_mib": round(folder_bytes(folder) / 2**20, 1), "build_peak_rss_mib": peak_rss_mib(),
    }


def search(folder: Path, count: int, seed: int, queries: int) -> dict:
    """Time the query mix on an existing index, opened fresh (as a reader process would)."""
    import tantivy

    started = time.perf_counter()
    index = SearchIndex(folder)
    open_ms = (time.perf_counter() - started) * 1000
    mix = [(kind, parse_query(text), with_since) for kind, text, with_since in Corpus(seed).queries(queries, count)]
    since = NOW - timedelta(days=7)
    latencies: dict[str, list[float]] = {}
    hits = 0
    for timed in (False, True):  # the first pass warms the page cache and tantivy's caches
        for kind, query, with_since in mix:
            begun = time.perf_counter()
            found = index.search(query, limit=50, since=since if with_since else None)
            elapsed = (time.perf_counter() - begun) * 1000
            if timed:
                latencies.setdefault(kind, []).append(elapsed)
                hits += len(found)
    everything = sorted(value for values in latencies.values() for value in values)
    # Outside the mix: how the cost of a two-word phrase depends on how common its words are
    # (every article holding both must have its positions compared).
    words = Corpus(seed).words
    rng = np.random.default_rng([seed, 4])
    phrase_bands = {}
    for low, high in ((0, 30), (30, 300), (300, 3_000)):
        phrases = [parse_query(f'"{words[int(a)]} {words[int(b)]}"') for a, b in rng.integers(low, high, (20, 2))]
        timings = []
        for timed in (False, True):
            for query in phrases:
                begun = time.perf_counter()
                index.search(query, limit=50)
                if timed:
                    timings.append((time.perf_counter() - begun) * 1000)
        phrase_bands[f"ranks {low}-{high}"] = {"median_ms": round(statistics.median(timings), 2), "max_ms": round(max(timings), 2)}
    begun = time.perf_counter()
    for _ in range(20):
        index.refresh()
    refresh_ms = (time.perf_counter() - begun) * 1000 / 20
    return {
        "queries": len(everything),
        "segments": tantivy.Index.open(str(folder)).searcher().num_segments,
        "open_ms": round(open_ms, 1),
        "median_ms": round(statistics.median(everything), 2),
        "p95_ms": round(percentile(everything, 95), 2),
        "max_ms": round(everything[-1], 2),
        "mean_hits": round(hits / len(everything), 1),
        "p95_ms_by_kind": {kind: round(percentile(sorted(values), 95), 2) for kind, values in latencies.items()},
        "phrase_ms_by_word_rank": phrase_bands,
        "refresh_ms": round(refresh_ms, 2),
        "search_peak_rss_mib": peak_rss_mib(),
    }


def percentile(ordered: list[float], percent: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(percent / 100 * len(ordered))) - 1))]


def run_child(arguments: list[str]) -> dict:
    """Run this script in a fresh process for one step; returns the JSON it prints."""
    output = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=240, help="queries in the mix (at least 200 advised)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the indexes in this folder and keep them")
    parser.add_argument("--reuse", action="store_true", help="with --keep: search existing indexes, do not rebuild")
    parser.add_argument("--commit-every", type=int, default=100_000, help="articles per commit while building")
    parser.add_argument("--writer-threads", type=int, default=WRITER_THREADS)
    parser.add_argument("--writer-heap-mb", type=int, default=WRITER_HEAP_BYTES // 1_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size only")
    parser.add_argument("--step", choices=["build", "search"], help=argparse.SUPPRESS)  # internal: one step
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.step == "build":
        count = args.sizes[0]
        result = build(args.folder, count, args.seed, args.commit_every, args.writer_threads, args.writer_heap_mb)
        print(json.dumps(result))
        return 0
    if args.step == "search":
        print(json.dumps(search(args.folder, args.sizes[0], args.seed, args.queries)))
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="newswatch-search-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for size in args.sizes:
            folder = work / f"index-{size}"
            common = ["--sizes", str(size), "--seed", str(args.seed), "--folder", str(folder)]
            result = {"size": size}
            if not (args.reuse and folder.exists()):
                result |= run_child([*common, "--step", "build", "--commit-every", str(args.commit_every),
                                     "--writer-threads", str(args.writer_threads),
                                     "--writer-heap-mb", str(args.writer_heap_mb)])
            result |= run_child([*common, "--step", "search", "--queries", str(args.queries)])
            result["meets_p95_target"] = result["p95_ms"] < P95_TARGET_MS
            result["meets_rss_target"] = max(result.get("build_peak_rss_mib", 0), result["search_peak_rss_mib"]) < RSS_TARGET_MIB
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(f"{size:>9,} articles: " + (
                    f"build {result['build_s']} s (+{result['generate_s']} s generating), "
                    f"{result['disk_mib']} MiB on disk, build peak RSS {result['build_peak_rss_mib']} MiB; "
                    if "build_s" in result else "reused index; "
                ) + (
                    f"{result['queries']} queries: median {result['median_ms']} ms, p95 {result['p95_ms']} ms "
                    f"(target < {P95_TARGET_MS}), max {result['max_ms']} ms, {result['segments']} segments, "
                    f"search peak RSS {result['search_peak_rss_mib']} MiB (target < {RSS_TARGET_MIB})"
                ), flush=True)
                print("           p95 by kind (ms): " + ", ".join(
                    f"{kind} {value}" for kind, value in result["p95_ms_by_kind"].items()
                ), flush=True)
                print("           two-word phrases by word rank (median/max ms): " + ", ".join(
                    f"{band} {value['median_ms']}/{value['max_ms']}" for band, value in result["phrase_ms_by_word_rank"].items()
                ), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
