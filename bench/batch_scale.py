"""Cost of dedupe and story assignment as one batch grows: `dedupe_and_cluster` for 1k, 5k and 20k new articles.

A first run over a big backlog hands the pipeline many new articles at once. This measures the
pipeline's `dedupe_and_cluster` (neighbour search, dedupe, clustering) for one batch of N new articles
against an empty warehouse, in a fresh process each, for two kinds of text:

- `distinct`: articles of many different stories (stories of geometric size, mean about 2.5),
  with synthetic vectors of news-like cosine structure and names per story (the generator of
  `bench/history_scale.py`); quality is the B-cubed F1 of the stories against the generated ones;
- `templated`: automated items that read alike except for names and numbers (earnings reports,
  match results, weather notes), embedded with the real model (cached in `--work`), every one a
  different event: ideally N stories and no duplicates.

Reports seconds, milliseconds per article, peak RSS of the measuring process, and the verdicts.

Example:
    python bench/batch_scale.py --sizes 1000 5000 20000 --kinds distinct templated
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
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SYLLABLES = ["ka", "lo", "ve", "tri", "mar", "zen", "dro", "pi", "sul", "ga", "ne", "bor", "ix", "qua", "ren", "to"]
CITIES = ["Denver", "Leeds", "Osaka", "Lyon", "Porto", "Austin", "Gdansk", "Perth", "Turin", "Malmo", "Quito", "Pune"]
TEMPLATES = [
    "{name} Holdings ({ticker}) on {day} reported quarterly earnings of ${eps} per share on revenue of ${revenue} "
    "million, {against} the ${estimate} analysts had expected. Shares of {name} rose {percent}% to ${price} in "
    "trading in {city}. The {city}-based company said it expects full-year revenue between ${low} million and "
    "${high} million, and chief executive {person} said demand stayed strong.",
    "{name} United beat {other} Rovers {goals}-{against_goals} on {day} in front of {crowd} fans in {city}. "
    "{person} scored twice for {name}, who move to {points} points, while {other} stay on {other_points}. "
    "{name} manager {manager} said the team had earned the win after {minutes} minutes of pressure.",
    "Weather in {city} on {day}: a high of {high_temp} degrees and a low of {low_temp}, with {rain} millimetres of "
    "rain expected and winds of up to {wind} km/h. Forecaster {person} said conditions in {city} would {trend} "
    "by {next_day}, with a {chance}% chance of showers near {name} Park.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def made_up_name(rng: np.random.Generator) -> str:
    return "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()


def templated_texts(count: int, seed: int = 11) -> list[str]:
    """Automated items, alike except for names and numbers; each one a different event."""
    rng = np.random.default_rng(seed)
    texts = []
    for index in range(count):
        name, other = made_up_name(rng), made_up_name(rng)
        values = {
            "name": name, "other": other, "ticker": name[:4].upper(), "day": DAYS[index % 7],
            "next_day": DAYS[(index + 1) % 7], "city": CITIES[int(rng.integers(len(CITIES)))],
            "person": f"{made_up_name(rng)} {made_up_name(rng)}", "manager": f"{made_up_name(rng)} {made_up_name(rng)}",
            "eps": f"{rng.uniform(0.1, 5):.2f}", "revenue": f"{rng.uniform(50, 5000):.1f}",
            "against": ["above", "below"][index % 2], "estimate": f"{rng.uniform(0.1, 5):.2f}",
            "percent": f"{rng.uniform(0.1, 12):.1f}", "price": f"{rng.uniform(5, 400):.2f}",
            "low": int(rng.integers(100, 900)), "high": int(rng.integers(900, 2000)),
            "goals": int(rng.integers(1, 6)), "against_goals": int(rng.integers(0, 4)),
            "crowd": f"{int(rng.integers(3000, 80000)):,}", "points": int(rng.integers(3, 90)),
            "other_points": int(rng.integers(3, 90)), "minutes": int(rng.integers(60, 95)),
            "high_temp": int(rng.integers(-5, 38)), "low_temp": int(rng.integers(-15, 20)),
            "rain": int(rng.integers(0, 40)), "wind": int(rng.integers(5, 90)),
            "trend": ["improve", "worsen", "stay settled"][index % 3], "chance": int(rng.integers(0, 100)),
        }
        texts.append(TEMPLATES[index % len(TEMPLATES)].format(**values))
    return texts


def templated_vectors(texts: list[str], work: Path) -> np.ndarray:
    """The real model's vectors of the templated texts (cached: embedding 20k texts takes a minute)."""
    cache = work / f"templated-{len(texts)}-{hashlib.sha256(''.join(texts).encode()).hexdigest()[:12]}.npy"
    if cache.exists():
        return np.load(cache)
    from flows.embedding import embed_texts
    from flows.settings import Settings

    started = time.perf_counter()
    vectors, _ = embed_texts(texts, Settings())
    print(json.dumps({"embedded": len(texts), "embed_s": round(time.perf_counter() - started, 1)}), file=sys.stderr)
    array = np.stack(vectors).astype(np.float32)
    np.save(cache, array)
    return array


def make_batch(kind: str, size: int, work: Path) -> tuple[list, dict[str, int]]:
    """Prepared articles of one kind, and the event each belongs to."""
    from extract.content import Article
    from extract.terms import extract_terms
    from flows.pipeline import PreparedArticle, article_id_for, canonical_url

    rng = np.random.default_rng(size)
    prepared, event_of = [], {}

    def add(index: int, text: str, vector: np.ndarray, terms: Counter, event: int, when: datetime) -> None:
        url = f"https://{kind}.example/{index}"
        item = PreparedArticle(
            article=Article(url=url, title=text[:60], text=text, published_at=when), article_id=article_id_for(url),
            canonical_url=canonical_url(url), text_hash=hashlib.sha256(text.encode()).hexdigest(),
            terms=terms, seen_at=when, vector=vector,
        )
        prepared.append(item)
        event_of[item.article_id] = event

    if kind == "templated":
        texts = templated_texts(max(size, 20_000))[:size]
        vectors = templated_vectors(templated_texts(max(size, 20_000)), work)[:size]
        for index, (text, vector) in enumerate(zip(texts, vectors)):
            when = NOW - timedelta(seconds=float(rng.uniform(0, 86400)))
            add(index, text, vector, extract_terms(text[:60], text), index, when)
    else:
        from wordfreq import top_n_list

        from bench.history_scale import TOPICS, World, story_sizes

        world = World()
        # Common words are real English words (so general-language frequencies know them), names
        # are made up per story, and each topic has words of its own.
        common = top_n_list("en", 20_000)
        ranks = np.arange(1, len(common) + 1)
        cdf = np.cumsum(1 / ranks) / (1 / ranks).sum()
        topic_words = [[made_up_name(rng).lower() for _ in range(6)] for _ in range(TOPICS)]
        index = 0
        for story, members in enumerate(story_sizes(size, rng)):
            names = [made_up_name(rng).lower() for _ in range(4)]
            start = NOW - timedelta(seconds=float(rng.uniform(0, 3 * 86400)))
            for _ in range(members):
                words = [common[i] for i in np.searchsorted(cdf, rng.random(21))]
                own = [names[j] for j in rng.permutation(4)[:3]]
                topic = [topic_words[world.topic_of(story)][j] for j in rng.permutation(6)[:2]]
                terms = Counter(words + own + topic)
                when = start + timedelta(seconds=float(rng.exponential(4 * 3600)))
                text = " ".join([*words, *own, *topic, str(index)])
                add(index, text, world.article_vector(story, rng), terms, story, when)
                index += 1
    prepared.sort(key=lambda item: (item.event_time, item.article.url))
    return prepared, event_of


def bcubed_f1(predicted: dict[str, str], gold: dict[str, int]) -> float:
    by_predicted, by_gold = defaultdict(set), defaultdict(set)
    for doc, cluster in predicted.items():
        by_predicted[cluster].add(doc)
    for doc, cluster in gold.items():
        by_gold[cluster].add(doc)
    precision = sum(len(by_predicted[predicted[d]] & by_gold[gold[d]]) / len(by_predicted[predicted[d]]) for d in gold)
    recall = sum(len(by_predicted[predicted[d]] & by_gold[gold[d]]) / len(by_gold[gold[d]]) for d in gold)
    precision, recall = precision / len(gold), recall / len(gold)
    return 2 * precision * recall / (precision + recall)


def peak_rss_mib() -> int:
    """This process's peak resident memory (VmHWM: unlike getrusage's, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure(batch_path: Path, db: Path) -> dict:
    """In this process: `dedupe_and_cluster` for the pickled batch against an empty warehouse."""
    from extract.terms import TermWeights
    from flows.pipeline import dedupe_and_cluster
    from flows.settings import Settings
    from warehouse.connection import open_warehouse

    prepared, event_of = pickle.loads(batch_path.read_bytes())
    settings = Settings(db=db, model="synthetic")
    TermWeights().idf("warm-up")  # one-time table loading is not part of the batch's cost
    with open_warehouse(db):
        pass
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    verdicts = dedupe_and_cluster(prepared, db, settings)
    seconds = time.perf_counter() - started
    stories = {article_id: assignment.story_id for article_id, assignment in verdicts.stories.items()}
    return {
        "decide_s": round(seconds, 2),
        "ms_per_article": round(1000 * seconds / len(prepared), 3),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
        "duplicates": len(verdicts.duplicates),
        "stories": len(set(stories.values())),
        "events": len(set(event_of.values())),
        "bcubed_f1": round(bcubed_f1(stories, event_of), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20_000])
    parser.add_argument("--kinds", nargs="+", choices=["distinct", "templated"], default=["distinct", "templated"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/newswatch-batch-scale"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one measurement may take")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: measure this batch file
    args = parser.parse_args(argv)
    if args.measure:
        from warehouse.vector_index import discard_indexes

        db = args.measure.with_suffix(".duckdb")
        db.unlink(missing_ok=True)
        print(json.dumps(measure(args.measure, db)))
        db.unlink(missing_ok=True)
        discard_indexes(db)
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for kind in args.kinds:
        for size in args.sizes:
            batch_path = args.work / f"{kind}-{size}.batch.pickle"
            batch_path.write_bytes(pickle.dumps(make_batch(kind, size, args.work)))
            info = {"kind": kind, "articles": size}
            try:
                output = subprocess.run(
                    [sys.executable, __file__, "--measure", str(batch_path)],
                    check=True, capture_output=True, text=True, timeout=args.timeout,
                ).stdout
                info.update(json.loads(output.strip().splitlines()[-1]))
            except subprocess.TimeoutExpired:
                info["decide_s"] = f"> {args.timeout:g} (stopped)"
            batch_path.unlink()
            results.append(info)
            print(json.dumps(info), flush=True)
    for kind in args.kinds:
        timed = [r for r in results if r["kind"] == kind and isinstance(r.get("decide_s"), float)]
        if len(timed) > 1:
            ratio = timed[-1]["ms_per_article"] / timed[0]["ms_per_article"]
            print(json.dumps({"kind": kind, "per_article_ratio_largest_to_smallest": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
