"""Cost of dedupe and story assignment as the warehouse grows: 1,000 new articles against N stored.

A warehouse of `--sizes` synthetic articles is generated for each size (and kept in `--work`,
so later runs reuse it), with realistic cluster structure:

- stories of geometric size (mean about 2.5, a few of hundreds), each in one of 300 topics;
- unit vectors (384 dimensions) made of a shared news direction, the topic, the story and
  noise, so that unrelated articles have cosine ~0.1, same-topic ~0.35, same-story ~0.7,
  like all-MiniLM-L6-v2 on news;
- 26 terms per article: common words (Zipf over 20k), the story's names and its topic's terms;
  the text is those words;
- every article published within the last six days, so the whole history is inside the story
  window (the worst case: the window prunes nothing).

Then a batch of 1,000 new articles is made: 400 new reports of stored stories, 50 near-copies of
stored articles (vector cosine ~0.99, text a copy with a few words added), and 550 articles of
new stories. Before the timed step, the articles of the previous batch (1,000 more) are loaded,
so the vector index beside the warehouse must catch up as it does on every run (that previous
run's decide and load happen in a process of their own, whose peak RSS is reported apart as
`previous_peak_rss_mib`: it includes the load). The timed step is the pipeline's `dedupe_and_cluster` (index
sync and save, neighbour search, reading the candidates, dedupe, clustering), run in a fresh
process whose peak RSS is reported. Correctness is checked
too: how many stored-story reports join their story, how many copies are found, and how many
new-story articles wrongly join a stored story.

Example:
    python bench/history_scale.py --sizes 10000 100000 1000000 --work /tmp/history-scale
"""

import argparse
import hashlib
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIMENSIONS = 384
TOPICS = 300
COMMON_WORDS = 20_000
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
WEIGHTS = (0.35, 0.45, 0.6, 0.55)  # shared direction, topic, story, noise


def article_id(index: int) -> str:
    return hashlib.sha256(f"https://synthetic.example/{index}".encode()).hexdigest()[:16]


class World:
    """Deterministic topic and story vectors, names and times (story vectors are made on demand)."""

    def __init__(self, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.shared = _unit(rng.standard_normal(DIMENSIONS))
        self.topics = _unit(rng.standard_normal((TOPICS, DIMENSIONS)))
        ranks = np.arange(1, COMMON_WORDS + 1)
        self.word_cdf = np.cumsum(1 / ranks) / (1 / ranks).sum()

    def story_vector(self, story: int) -> np.ndarray:
        return _unit(np.random.default_rng([self.seed, story]).standard_normal(DIMENSIONS))

    def topic_of(self, story: int) -> int:
        return (story * 2654435761) % TOPICS

    def article_vector(self, story: int, rng: np.random.Generator) -> np.ndarray:
        shared, topic, own, noise = WEIGHTS
        vector = (
            shared * self.shared
            + topic * self.topics[self.topic_of(story)]
            + own * self.story_vector(story)
            + noise * _unit(rng.standard_normal(DIMENSIONS))
        )
        return _unit(vector).astype(np.float32)

    def article_terms(self, story: int, rng: np.random.Generator) -> list[str]:
        words = {f"w{w}" for w in np.searchsorted(self.word_cdf, rng.random(21))}
        names = {f"name{story}x{j}" for j in rng.permutation(4)[:3]}
        topic = {f"topic{self.topic_of(story)}x{j}" for j in rng.permutation(6)[:2]}
        return sorted(words | names | topic)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def story_sizes(count: int, rng: np.random.Generator) -> list[int]:
    sizes, total = [], 0
    while total < count:
        size = min(int(rng.geometric(0.4)), 300, count - total)
        sizes.append(size)
        total += size
    return sizes


def generate(db: Path, size: int, settings) -> dict:
    """Write `size` stored articles (plus the previous batch's 1,000, loaded later) to a fresh warehouse."""
    import pyarrow as pa

    from flows.embedding import embedding_model_key
    from warehouse.connection import open_warehouse

    world = World()
    rng = np.random.default_rng(size)
    sizes = story_sizes(size, rng)
    model = embedding_model_key(settings)
    started = time.perf_counter()
    index = 0
    with open_warehouse(db) as connection:
        story = 0
        while story < len(sizes):
            rows, vectors, term_rows = [], [], []
            while story < len(sizes) and len(rows) < 50_000:
                start = NOW - timedelta(days=6) + timedelta(seconds=float(rng.uniform(0, 5.5 * 86400)))
                first_id = article_id(index)
                for member in range(sizes[story]):
                    when = min(start + timedelta(seconds=float(rng.exponential(8 * 3600))), NOW - timedelta(hours=1))
                    terms = world.article_terms(story, rng)
                    text = " ".join(terms)
                    rows.append({
                        "article_id": article_id(index), "url": f"https://synthetic.example/{index}",
                        "canonical_url": f"https://synthetic.example/{index}", "title": f"story {story}",
                        "published_at": when, "ingested_at": when, "text": text,
                        "text_hash": hashlib.sha256(text.encode() + str(index).encode()).hexdigest(),
                        "source": "synthetic", "story_id": first_id, "story_similarity": 0.5,
                    })
                    vectors.append(world.article_vector(story, rng))
                    term_rows.extend((article_id(index), term) for term in terms)
                    index += 1
                story += 1
            _insert(connection, rows, vectors, term_rows, model, pa)
        run = connection.execute
        run("""
            INSERT INTO terms SELECT term, count(*) FROM article_terms GROUP BY term
            ON CONFLICT (term) DO UPDATE SET document_count = excluded.document_count
        """).fetchall()
    return {"articles": index, "stories": len(sizes), "generate_s": round(time.perf_counter() - started, 1)}


def _insert(connection, rows, vectors, term_rows, model, pa) -> None:
    articles = pa.Table.from_pylist(rows)
    flat = np.concatenate(vectors).astype(np.float32)
    offsets = np.arange(0, len(flat) + 1, DIMENSIONS, dtype=np.int32)
    embeddings = pa.table({
        "text_hash": [row["text_hash"] for row in rows],
        "model": [model] * len(rows),
        "vector": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        "chunk_count": [1] * len(rows),
        "created_at": [row["ingested_at"] for row in rows],
    })
    terms = pa.table({"article_id": [a for a, _ in term_rows], "term": [t for _, t in term_rows],
                      "count": pa.array([1] * len(term_rows), pa.int32())})
    for name, table, target in (("a", articles, "articles"), ("e", embeddings, "embeddings"), ("t", terms, "article_terms")):
        connection.register(f"new_{name}", table)
        connection.execute(f"INSERT INTO {target} BY NAME SELECT * FROM new_{name}").fetchall()
        connection.unregister(f"new_{name}")


def make_batch(db: Path, size: int, settings, offset: int, seed: int, now: datetime) -> tuple[list, dict]:
    """1,000 new articles: reports of stored stories, near-copies, new stories; and what each should get."""
    from extract.content import Article
    from flows.pipeline import PreparedArticle, canonical_url
    from warehouse.connection import open_warehouse

    world = World()
    rng = np.random.default_rng(seed)
    with open_warehouse(db, read_only=True) as connection:
        stored = connection.execute(
            "SELECT article_id, story_id, title, text FROM articles USING SAMPLE 2000 ROWS (reservoir, 42)"
        ).fetchall()
    prepared, expected = [], {}
    new_story = 10_000_000 + seed * 10_000

    def add(story: int, text: str, vector: np.ndarray, terms: list[str], expect: tuple):
        index = offset + len(prepared)
        url = f"https://synthetic.example/new/{index}"
        article = Article(url=url, title=f"story {story}", text=text, published_at=now)
        item = PreparedArticle(
            article=article, article_id=article_id(10**9 + index), canonical_url=canonical_url(url),
            text_hash=hashlib.sha256(text.encode() + url.encode()).hexdigest(),
            terms=__import__("collections").Counter(terms), seen_at=now, vector=vector,
        )
        prepared.append(item)
        expected[item.article_id] = expect

    for stored_id, story_id, title, text in stored[:400]:
        story = int(title.split()[1])
        terms = world.article_terms(story, rng)
        add(story, " ".join(terms), world.article_vector(story, rng), terms, ("joins", story_id))
    for stored_id, story_id, title, text in stored[400:450]:
        story = int(title.split()[1])
        with open_warehouse(db, read_only=True) as connection:
            vector = np.asarray(connection.execute(
                "SELECT e.vector FROM articles a JOIN embeddings e USING (text_hash) WHERE a.article_id = ?", [stored_id]
            ).fetchall()[0][0], dtype=np.float32)
        copy = _unit(vector + 0.015 * _unit(rng.standard_normal(DIMENSIONS))).astype(np.float32)
        words = text.split()
        add(story, text + " update", copy, words + ["update"], ("copies", stored_id))
    while len(prepared) < 1000:
        story = new_story
        new_story += 1
        for _ in range(min(int(rng.geometric(0.4)), 1000 - len(prepared))):
            terms = world.article_terms(story, rng)
            add(story, " ".join(terms), world.article_vector(story, rng), terms, ("new", story))
    return prepared, expected


def load_previous(db: Path, size: int) -> None:
    """The previous run (in its own process): its verdicts and its load, so the index is one batch behind."""
    from flows.embedding import embedding_model_key
    from flows.pipeline import build_load_batch, dedupe_and_cluster, load
    from flows.settings import Settings
    from warehouse.load import EmbeddingRow

    settings = Settings(db=db, model="synthetic")
    then = NOW - timedelta(minutes=30)
    previous, _ = make_batch(db, size, settings, 0, seed=1, now=then)
    verdicts = dedupe_and_cluster(previous, db, settings)
    vectors = [EmbeddingRow(item.text_hash, embedding_model_key(settings), item.vector.tolist(), 1, then) for item in previous]
    load(build_load_batch(previous, verdicts, vectors, "synthetic", then), db, settings)
    # The next batch is made here too, so that reading its samples is not charged to `dedupe_and_cluster`.
    batch_file(db).write_bytes(pickle.dumps(make_batch(db, size, settings, 1000, seed=2, now=NOW)))


def batch_file(db: Path) -> Path:
    return db.with_suffix(".batch.pickle")


def measure(db: Path, size: int) -> dict:
    """In this process: time `dedupe_and_cluster` for the next batch."""
    from flows.pipeline import dedupe_and_cluster
    from flows.settings import Settings

    settings = Settings(db=db, model="synthetic")
    batch, expected = pickle.loads(batch_file(db).read_bytes())
    # One-time costs of a fresh process (imports, wordfreq's tables, the first DuckDB open) are not
    # part of the per-batch cost being measured.
    from extract.terms import TermWeights
    from warehouse.connection import open_warehouse

    TermWeights().idf("warm-up")
    with open_warehouse(db, read_only=True):
        pass
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    verdicts = dedupe_and_cluster(batch, db, settings)
    seconds = time.perf_counter() - started
    joined = sum(1 for aid, (kind, target) in expected.items()
                 if kind == "joins" and verdicts.stories[aid].story_id == target and aid not in verdicts.duplicates)
    copies = sum(1 for aid, (kind, target) in expected.items()
                 if kind == "copies" and aid in verdicts.duplicates and verdicts.duplicates[aid].original_id == target)
    new_ids = {item.article_id for item in batch}
    wrongly_joined = sum(1 for aid, (kind, _) in expected.items() if kind == "new" and verdicts.stories[aid].story_id not in new_ids)
    false_copies = sum(1 for aid, (kind, _) in expected.items() if kind != "copies" and aid in verdicts.duplicates)
    return {
        "decide_s": round(seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_decide_mib": round(rss_before / 1024),
        "joined_their_story": f"{joined}/400",
        "copies_found": f"{copies}/50",
        "new_joined_stored": f"{wrongly_joined}/550",
        "false_copies": false_copies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/newswatch-history-scale"))
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    parser.add_argument("--previous", type=int, help=argparse.SUPPRESS)  # internal: load the previous batch
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per size (each on a fresh copy)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import logging
    logging.basicConfig(level=logging.WARNING)

    from flows.settings import Settings

    if args.previous:
        load_previous(args.work / f"run-{args.previous}.duckdb", args.previous)
        print(json.dumps({"previous_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
        return 0
    if args.measure:
        db = args.work / f"run-{args.measure}.duckdb"
        if os.environ.get("HISTORY_SCALE_PROFILE"):
            import cProfile
            cProfile.runctx("print(json.dumps(measure(db, args.measure)))", globals(), locals(), os.environ["HISTORY_SCALE_PROFILE"])
            return 0
        print(json.dumps(measure(db, args.measure)))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        base = args.work / f"history-{size}.duckdb"
        info = {"stored": size}
        if not base.exists():
            partial = base.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            info.update(generate(partial, size, Settings(db=partial, model="synthetic")))
            partial.rename(base)
        from warehouse.connection import open_warehouse
        from warehouse.vector_index import VectorIndex, discard_indexes, index_folder
        from flows.embedding import embedding_model_key

        settings = Settings(db=base, model="synthetic")
        if not index_folder(base).exists():
            started = time.perf_counter()
            with open_warehouse(base) as connection:
                index = VectorIndex(base, embedding_model_key(settings), DIMENSIONS, settings.vector_index_exact_limit)
                index.sync(connection)
                index.save()
            info["index_build_s"] = round(time.perf_counter() - started, 1)
        info["index_mib"] = round(sum(p.stat().st_size for p in index_folder(base).iterdir()) / 2**20, 1)
        info["db_mib"] = round(base.stat().st_size / 2**20)
        runs = []
        for _ in range(args.repeat):
            copy = args.work / f"run-{size}.duckdb"
            discard_indexes(copy)
            subprocess.run(["cp", "--reflink=auto", str(base), str(copy)], check=True)
            subprocess.run(["cp", "-r", str(index_folder(base)), str(index_folder(copy))], check=True)
            results_of = {}
            for step in ("--previous", "--measure"):
                output = subprocess.run(
                    [sys.executable, __file__, "--work", str(args.work), step, str(size)],
                    check=True, capture_output=True, text=True,
                ).stdout
                results_of.update(json.loads(output.strip().splitlines()[-1]))
            runs.append(results_of)
            copy.unlink()
            batch_file(copy).unlink()
            discard_indexes(copy)
        best = min(runs, key=lambda run: run["decide_s"])
        info.update(best)
        info["decide_s_runs"] = [run["decide_s"] for run in runs]
        results.append(info)
        print(json.dumps(info), flush=True)
    if len(results) > 1:
        print(json.dumps({"time_ratio_largest_to_smallest": round(results[-1]["decide_s"] / results[0]["decide_s"], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
