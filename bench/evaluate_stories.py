"""Score story clustering and duplicate detection of the real pipeline on labelled news events.

Data: a folder holding `docs.jsonl` with `doc_id`, `story_id` and `text` per line (the layout of
ECB+ `B1_ecbplus_events/dev`). Every document is written as an article file and ingested by the
`ingest-fixtures` flow, in one run or split over several runs (`--runs N`) to exercise
incremental assignment; then the stored verdicts are scored:

- stories: B-cubed precision, recall and F1 against `story_id`;
- duplicates: pairs with word 5-shingle Jaccard >= 0.5 are copies and must be linked; pairs from
  different stories, and same-story pairs under 0.2, must not be. Pairs in between are not
  scored.

Example:
    python bench/evaluate_stories.py --data ../shared/eval/B1_ecbplus_events/dev --runs 3
"""

import argparse
import itertools
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

COPY_JACCARD = 0.5
DIFFERENT_JACCARD = 0.2


def word_shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1))}


def bcubed(predicted: dict[str, str], gold: dict[str, str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering (both keyed by document)."""
    by_predicted, by_gold = defaultdict(set), defaultdict(set)
    for doc, cluster in predicted.items():
        by_predicted[cluster].add(doc)
    for doc, cluster in gold.items():
        by_gold[cluster].add(doc)
    precision = recall = 0.0
    for doc in gold:
        shared = len(by_predicted[predicted[doc]] & by_gold[gold[doc]])
        precision += shared / len(by_predicted[predicted[doc]])
        recall += shared / len(by_gold[gold[doc]])
    precision, recall = precision / len(gold), recall / len(gold)
    return precision, recall, 2 * precision * recall / (precision + recall)


def duplicate_scores(docs: list[dict], group_of: dict[str, str]) -> dict[str, float]:
    """Pair precision/recall of duplicate links (pairs in the same duplicate group)."""
    shingles = {doc["doc_id"]: word_shingles(doc["text"]) for doc in docs}
    true_positive = positives = false_cross = false_same_story = predicted_scored = 0
    for a, b in itertools.combinations(docs, 2):
        predicted = group_of[a["doc_id"]] == group_of[b["doc_id"]]
        if a["story_id"] != b["story_id"]:
            false_cross += predicted
            predicted_scored += predicted
            continue
        sa, sb = shingles[a["doc_id"]], shingles[b["doc_id"]]
        jaccard = len(sa & sb) / len(sa | sb)
        if jaccard >= COPY_JACCARD:
            positives += 1
            true_positive += predicted
            predicted_scored += predicted
        elif jaccard < DIFFERENT_JACCARD:
            false_same_story += predicted
            predicted_scored += predicted
    return {
        "precision": true_positive / predicted_scored if predicted_scored else 1.0,
        "recall": true_positive / positives if positives else 1.0,
        "copies": positives,
        "found": true_positive,
        "cross_story_false": false_cross,
        "same_story_false": false_same_story,
    }


def naive_baseline(docs: list[dict]) -> dict:
    """Single-pass centroid clustering of MiniLM vectors truncated at 256 tokens, best threshold."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from extract.embed import DEFAULT_MODEL, resolve_model

    model = SentenceTransformer(resolve_model(DEFAULT_MODEL), device="cpu")
    vectors = model.encode([doc["text"] for doc in docs], batch_size=32, normalize_embeddings=True)
    gold = {doc["doc_id"]: doc["story_id"] for doc in docs}
    best = (0.0, 0.0)
    for threshold in np.arange(0.40, 0.86, 0.05):
        sums: list[np.ndarray] = []
        predicted = {}
        for doc, vector in zip(docs, vectors):
            scores = [float(s @ vector) / float(np.linalg.norm(s)) for s in sums]
            if scores and max(scores) >= threshold:
                index = int(np.argmax(scores))
                sums[index] = sums[index] + vector
            else:
                index = len(sums)
                sums.append(vector.copy())
            predicted[doc["doc_id"]] = index
        best = max(best, (bcubed(predicted, gold)[2], round(float(threshold), 2)))
    return {"naive_minilm256_bcubed_f1": round(best[0], 4), "naive_best_threshold": best[1]}


def evaluate(docs: list[dict], *, runs: int = 1, keep_db: Path | None = None, settings=None) -> dict:
    """Ingest the documents through the `ingest-fixtures` flow (in `runs` successive runs) and score what it stored.

    Returns:
        B-cubed precision/recall/F1 of the stories, duplicate pair scores and counts, and the seconds taken.
    """
    from flows.embedding import verdict_whole_vectors
    from flows.ingest import ingest_fixtures
    from flows.settings import Settings
    from warehouse.connection import open_warehouse

    settings = settings or Settings()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        db = keep_db or scratch / "eval.duckdb"
        db.unlink(missing_ok=True)
        started = time.perf_counter()
        size = -(-len(docs) // runs)
        for run, start in enumerate(range(0, len(docs), size)):
            folder = scratch / f"run{run}"
            folder.mkdir()
            for position, doc in enumerate(docs[start : start + size]):
                # The name keeps the given order (the pipeline sorts undated articles by URL).
                (folder / f"{start + position:05d}__{doc['doc_id']}.txt").write_text(doc["text"], encoding="utf-8")
            ingest_fixtures(folder, db, settings)
        elapsed = time.perf_counter() - started
        with open_warehouse(db, read_only=True) as connection:
            rows = connection.execute("SELECT url, article_id, duplicate_of, story_id FROM articles").fetchall()
            wholes = verdict_whole_vectors(connection, settings)
    doc_of = {article_id: url.rsplit("__", 1)[1].removesuffix(".txt") for url, article_id, _, _ in rows}
    story = {doc_of[article_id]: story_id for _, article_id, _, story_id in rows}
    group = {doc_of[article_id]: duplicate_of or article_id for _, article_id, duplicate_of, _ in rows}
    scored = [doc for doc in docs if doc["doc_id"] in story]
    precision, recall, f1 = bcubed(story, {doc["doc_id"]: doc["story_id"] for doc in scored})
    duplicates = duplicate_scores(scored, group)
    return {
        "documents": len(docs),
        "stored": len(scored),
        "runs": runs,
        "stories_found": len(set(story.values())),
        "stories_true": len({doc["story_id"] for doc in docs}),
        "bcubed_precision": round(precision, 4),
        "bcubed_recall": round(recall, 4),
        "bcubed_f1": round(f1, 4),
        "duplicate_precision": round(duplicates["precision"], 4),
        "duplicate_recall": round(duplicates["recall"], 4),
        "copies_found": f"{duplicates['found']}/{duplicates['copies']}",
        "cross_story_duplicates": duplicates["cross_story_false"],
        "same_story_different_article_duplicates": duplicates["same_story_false"],
        "whole_vectors_a_verdict_needed": wholes,
        "seconds": round(elapsed, 1),
    }


def read_docs(folder: Path) -> list[dict]:
    """The documents of `docs.jsonl` in a folder (the layout of ECB+ `B1_ecbplus_events/dev`)."""
    source = folder / "docs.jsonl"
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with docs.jsonl")
    parser.add_argument("--runs", type=int, default=1, help="split the documents over this many ingest runs")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED", help="shuffle the order with this seed")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument(
        "--baseline", action="store_true",
        help="also score the naive method: MiniLM truncated at 256 tokens, one pass, best cosine threshold",
    )
    parser.add_argument("--keep-db", type=Path, default=None, help="write the database here instead of a temporary file")
    args = parser.parse_args(argv)
    source = args.data / "docs.jsonl"
    if not source.is_file():
        print(f"evaluate_stories: error: {source} not found", file=sys.stderr)
        return 2
    docs = read_docs(args.data)
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(docs)

    result = evaluate(docs, runs=args.runs, keep_db=args.keep_db)
    if args.baseline:
        result.update(naive_baseline(docs))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:42} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
