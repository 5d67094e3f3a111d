"""Score rewrite detection of the real pipeline: AI rewrites must be linked to their originals, different articles must not.

Data:
- `--rewrites`: a folder holding `pairs.jsonl` (`group`, `method`, `original`, `rewrite` per
  line: the layout of `R1_llmfake_rewrites/dev`);
- `--events`: a folder holding `docs.jsonl` (`doc_id`, `story_id`, `text`: the layout of ECB+
  `B1_ecbplus_events/dev`), the hard negatives: different articles on the same event.

Every text is written as an article file and ingested by the `ingest-fixtures` flow in two runs:
the first holds every event article, every original and part of the rewrites (`--first-share`),
the second the other rewrites, so that both the in-batch and the stored-history paths decide.
Then the stored verdicts are scored:

- recall: rewrites in the duplicate group of their original (by method);
- false links, by kind (pairs sharing wire text are not scored): event articles of the same story whose word 5-shingle containment
  (shorter in longer) is under 0.1 (they share no wire text; pairs sharing more are not scored),
  event articles of different stories, rewrite-set articles linked to event articles, and
  articles of different originals (unless those originals share wire text: the set lists some
  articles twice);
- the stories' B-cubed scores on the event articles, and each rewrite in its original's story;
- CPU seconds per article of the whole evaluation process (children included), and how many
  candidate pairs per article dedupe compared and the rewrite model scored.

Example:
    python bench/evaluate_rewrites.py --rewrites ../shared/eval/R1_llmfake_rewrites/dev \\
        --events ../shared/eval/B1_ecbplus_events/dev
"""

import argparse
import itertools
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from evaluate_stories import bcubed, read_docs, word_shingles  # a sibling script

SHARED_WIRE = 0.1  # 5-shingle containment of the shorter text in the longer from which two articles share wire text


def containment(a: set, b: set) -> float:
    """Share of the smaller set found in the larger."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return len(small & large) / len(small) if small else 0.0


def read_pairs(folder: Path) -> list[dict]:
    source = folder / "pairs.jsonl"
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build_documents(pairs: list[dict], events: list[dict], first_share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """The two runs' documents: events, originals and some rewrites first (shuffled, originals before their rewrites), then the rest."""
    originals: dict[str, dict] = {}
    rewrites = []
    for index, pair in enumerate(pairs):
        group = pair["group"]
        originals.setdefault(group, {"doc_id": f"original-{len(originals):04d}", "group": group, "story_id": f"r:{group}",
                                     "text": pair["original"], "role": "original"})
        rewrites.append({"doc_id": f"rewrite-{index:04d}", "group": group, "story_id": f"r:{group}",
                         "text": pair["rewrite"], "role": "rewrite", "method": pair.get("method", "rewrite")})
    rng = random.Random(seed)
    first = [*({**doc, "role": "event"} for doc in events), *originals.values()]
    rng.shuffle(first)
    rng.shuffle(rewrites)
    cut = round(len(rewrites) * first_share)
    return first + rewrites[:cut], rewrites[cut:]


def score(documents: list[dict], group_of: dict[str, str], story_of: dict[str, str]) -> dict:
    """Recall of rewrites, false links by kind, and story scores, from the stored verdicts."""
    by_id = {doc["doc_id"]: doc for doc in documents}
    original_of = {doc["group"]: doc["doc_id"] for doc in documents if doc["role"] == "original"}
    found, totals = Counter(), Counter()
    same_story = 0
    for doc in documents:
        if doc["role"] != "rewrite" or doc["doc_id"] not in group_of:
            continue
        original = original_of[doc["group"]]
        totals[doc["method"]] += 1
        found[doc["method"]] += group_of[doc["doc_id"]] == group_of[original]
        same_story += story_of[doc["doc_id"]] == story_of[original]
    false = Counter()
    examples: list[tuple[str, str]] = []  # the false links between event articles
    unscored = 0
    members: dict[str, list[str]] = {}
    for doc_id, group in group_of.items():
        members.setdefault(group, []).append(doc_id)
    shingles: dict[str, set] = {}
    for group in members.values():
        for a, b in itertools.combinations(sorted(group), 2):
            da, db = by_id[a], by_id[b]
            roles = {da["role"], db["role"]}
            if roles == {"event"}:
                if da["story_id"] != db["story_id"]:
                    false["event, different stories"] += 1
                    continue
                for doc in (da, db):
                    shingles.setdefault(doc["doc_id"], word_shingles(doc["text"]))
                if containment(shingles[a], shingles[b]) < SHARED_WIRE:
                    false["event, same story, no shared wire text"] += 1
                    examples.append((a, b))
                else:
                    unscored += 1
            elif "event" in roles:
                false["rewrite set to event"] += 1
            elif da["group"] != db["group"]:
                # Originals of different groups may be one article listed twice: those pairs are not scored.
                texts = [by_id[original_of[doc["group"]]] for doc in (da, db)]
                for doc in texts:
                    shingles.setdefault(doc["doc_id"], word_shingles(doc["text"]))
                if containment(shingles[texts[0]["doc_id"]], shingles[texts[1]["doc_id"]]) < SHARED_WIRE:
                    false["rewrite set, different originals"] += 1
                else:
                    unscored += 1
    events = {doc["doc_id"]: doc["story_id"] for doc in documents if doc["role"] == "event" and doc["doc_id"] in story_of}
    precision, recall, f1 = bcubed({doc: story_of[doc] for doc in events}, events) if events else (1.0, 1.0, 1.0)
    rewrites = sum(totals.values())
    return {
        "rewrites": rewrites,
        "rewrite_recall": round(sum(found.values()) / rewrites, 4) if rewrites else None,
        **{f"rewrite_recall_{method}": f"{found[method]}/{totals[method]}" for method in sorted(totals)},
        "rewrite_in_original_story": f"{same_story}/{rewrites}",
        "false_links": sum(false.values()),
        **{f"false_links: {kind}": count for kind, count in sorted(false.items())},
        "linked_pairs_sharing_wire_text_not_scored": unscored,
        "event_bcubed_precision": round(precision, 4),
        "event_bcubed_recall": round(recall, 4),
        "event_bcubed_f1": round(f1, 4),
        "false_link_examples": examples,
    }


class _DedupeCounts(logging.Handler):
    """Adds up the pipeline's per-batch dedupe counts (pairs compared, pairs the rewrite model scored)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.compared = self.scored = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("compared %d candidate pairs"):
            self.compared += record.args[0]
            self.scored += record.args[2]


def evaluate(pairs: list[dict], events: list[dict], *, first_share: float = 0.5, seed: int = 0,
             keep_db: Path | None = None, settings=None) -> dict:
    """Ingest the documents through the `ingest-fixtures` flow in two runs and score what it stored."""
    from flows.ingest import ingest_fixtures
    from flows.settings import Settings
    from warehouse.connection import open_warehouse

    settings = settings or Settings()
    runs = build_documents(pairs, events, first_share, seed)
    documents = [doc for run in runs for doc in run]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        db = keep_db or scratch / "eval.duckdb"
        db.unlink(missing_ok=True)
        started, cpu = time.perf_counter(), _cpu_seconds()
        counts = _DedupeCounts()
        pipeline_logger = logging.getLogger("flows.pipeline")
        pipeline_logger.addHandler(counts)
        pipeline_logger.setLevel(logging.INFO)
        position = 0
        for run, docs in enumerate(runs):
            folder = scratch / f"run{run}"
            folder.mkdir()
            for doc in docs:
                # The name keeps the given order (the pipeline sorts undated articles by URL).
                (folder / f"{position:05d}__{doc['doc_id']}.txt").write_text(doc["text"], encoding="utf-8")
                position += 1
            if docs:
                ingest_fixtures(folder, db, settings)
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        pipeline_logger.removeHandler(counts)
        with open_warehouse(db, read_only=True) as connection:
            rows = connection.execute("SELECT url, article_id, duplicate_of, story_id FROM articles").fetchall()
            kinds = dict(connection.execute(
                "SELECT duplicate_kind, count(*) FROM articles WHERE duplicate_kind IS NOT NULL GROUP BY 1").fetchall())
    doc_of = {article_id: url.rsplit("__", 1)[1].removesuffix(".txt") for url, article_id, _, _ in rows}
    group_of = {doc_of[article_id]: doc_of.get(duplicate_of or article_id) for _, article_id, duplicate_of, _ in rows}
    story_of = {doc_of[article_id]: story_id for _, article_id, _, story_id in rows}
    return {
        "documents": len(documents),
        "stored": len(rows),
        **score(documents, group_of, story_of),
        "duplicate_kinds": kinds,
        "seconds": round(elapsed, 1),
        "cpu_ms_per_article": round(1000 * cpu / max(1, len(documents)), 1),
        "candidate_pairs_compared_per_article": round(counts.compared / max(1, len(documents)), 2),
        "pairs_the_rewrite_model_scored_per_article": round(counts.scored / max(1, len(documents)), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewrites", type=Path, required=True, help="folder with pairs.jsonl")
    parser.add_argument("--events", type=Path, required=True, help="folder with docs.jsonl (hard negatives)")
    parser.add_argument("--first-share", type=float, default=0.5, help="share of the rewrites ingested in the first run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--show", action="store_true", help="print the beginnings of falsely linked event articles")
    parser.add_argument("--keep-db", type=Path, default=None, help="write the database here instead of a temporary file")
    args = parser.parse_args(argv)
    for source in (args.rewrites / "pairs.jsonl", args.events / "docs.jsonl"):
        if not source.is_file():
            print(f"evaluate_rewrites: error: {source} not found", file=sys.stderr)
            return 2
    if not 0 <= args.first_share <= 1:
        print("evaluate_rewrites: error: --first-share must lie between 0 and 1", file=sys.stderr)
        return 2
    events = read_docs(args.events)
    result = evaluate(read_pairs(args.rewrites), events, first_share=args.first_share, seed=args.seed, keep_db=args.keep_db)
    examples = result.pop("false_link_examples")
    if args.show:
        text = {doc["doc_id"]: " ".join(doc["text"].split()) for doc in events}
        for a, b in examples:
            print(f"false link {a} ~ {b}:\n  {text[a][:240]}\n  {text[b][:240]}")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:52} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
