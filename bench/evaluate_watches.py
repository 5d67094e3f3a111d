"""Score the alerts of watches on labelled news events, through the real ingest flow.

Data: a folder holding `docs.jsonl` with `doc_id`, `story_id` and `text` per line (the layout of
ECB+ `B1_ecbplus_events/dev`). For every labelled event two watches are stored, both with
`--min-articles 1 --min-sources 1`:

- a `--like` watch whose description is the first sentence (ECB+ texts hold one sentence a
  line: the first line with at least four words of letters, which skips datelines) of the
  event's first document in file order, embedded with the pipeline's
  embedder; that document stays in the data like every other;
- a `--query` watch `"name one" AND "name two"`: the two terms of `extract.terms.extract_terms`
  (names, places, numbers; title and text as the pipeline reads the file) whose query alone
  matches the most of the event and the least outside it: the largest (share of the event's
  articles matched) × (share of the matched articles that are the event's), ties by more matched
  articles, then alphabetically. A term whose analyzed tokens equal the first's is skipped.
  The names are picked knowing the labels, as a user who knows the event would pick them.

Then every document is written as an article file (names keep the file order) and ingested by the
`ingest-fixtures` flow, as `bench/evaluate_stories.py` does, and the `alerts` table is read: each
watch's alerted stories, scored against the gold events of their articles (the stories as stored
at the end of the run):

- precision: share of the articles in the alerted stories whose event is the watch's (story
  variant: share of the alerted stories whose majority event is the watch's; a tie counts for
  the event that comes first in the file);
- recall: share of the event's articles that lie in an alerted story;
- F1 per watch (0 for a watch that never alerted); macro averages per kind of watch, precision
  over the watches that alerted; F0.5 (precision weighs more) beside F1;
- the stories' ceiling: a perfect watch that alerts exactly the stories holding the event's
  articles (recall 1); its precision is what the clustering leaves to any watch.

The `--like` threshold is swept offline over the stored article and watch vectors (a watch
matches an article at cosine >= threshold, the article's story is the stored one), which is
what the flow computes; the chosen threshold is then checked with a second real ingest whose
alerts must equal the offline prediction.

`--like-from N` describes each event by its N-th document instead (to see how much the choice
of the describing sentence moves the curve).

Example:
    python bench/evaluate_watches.py --data ../shared/eval/B1_ecbplus_events/dev
    python bench/evaluate_watches.py --data ../shared/eval/B1_ecbplus_events/dev --like-from 1 --no-check
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

DEFAULT_THRESHOLDS = [round(0.30 + 0.05 * step, 2) for step in range(11)]  # 0.30 … 0.80
_WORD = re.compile(r"[^\W\d_]{2,}")
# How much more precision than recall weighs in the precision-preferring choice (F-beta, beta = 0.5).
BETA = 0.5


def read_docs(folder: Path) -> list[dict]:
    """The documents of `docs.jsonl`, in file order."""
    return [json.loads(line) for line in (folder / "docs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def first_sentence(text: str) -> str:
    """The first line with at least four words of letters (ECB+ texts hold one sentence a line; skips datelines)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if len([word for word in line.split() if _WORD.search(word)]) >= 4:
            return line
    return lines[0] if lines else text.strip()


def write_files(docs: list[dict], folder: Path) -> None:
    """One article file per document; the name keeps the given order (undated articles sort by URL)."""
    folder.mkdir(parents=True, exist_ok=True)
    for position, doc in enumerate(docs):
        (folder / f"{position:05d}__{doc['doc_id']}.txt").write_text(doc["text"], encoding="utf-8")


def doc_id_of(url: str) -> str:
    return url.rsplit("__", 1)[1].removesuffix(".txt")


def read_articles(folder: Path) -> dict[str, tuple[str | None, str]]:
    """(title, text) of each document as the pipeline reads its file."""
    from extract.fixtures import fixture_files, read_fixture_files

    articles, skipped = read_fixture_files(fixture_files(folder), folder)
    if skipped:
        raise SystemExit(f"evaluate_watches: {len(skipped)} files were skipped: {skipped[:3]}")
    return {doc_id_of(article.url): (article.title, article.text) for article in articles}


def choose_names(docs: list[dict], articles: dict[str, tuple[str | None, str]]) -> dict[str, dict]:
    """The two most distinctive names of every event and the keyword query made of them."""
    from extract.query import BatchMatcher, analyze, parse_query
    from extract.terms import extract_terms

    matcher = BatchMatcher((doc_id, title, text) for doc_id, (title, text) in articles.items())
    members: dict[str, set[str]] = defaultdict(set)
    for doc in docs:
        members[doc["story_id"]].add(doc["doc_id"])
    terms_of = {doc_id: set(extract_terms(title, text)) for doc_id, (title, text) in articles.items()}
    matched_by: dict[str, set[str]] = {}
    chosen = {}
    for event, inside in members.items():
        candidates = sorted(set().union(*(terms_of[doc_id] for doc_id in inside)))
        scored = []
        for term in candidates:
            if term not in matched_by:
                matched_by[term] = matcher.matches(parse_query(f'"{term}"')) if analyze(term) else set()
            matched = matched_by[term]
            hits = len(matched & inside)
            if not hits:
                continue
            scored.append((-(hits / len(inside)) * (hits / len(matched)), -hits, term))
        scored.sort()
        names: list[str] = []
        for _, _, term in scored:
            if names and analyze(term) == analyze(names[0]):
                continue
            names.append(term)
            if len(names) == 2:
                break
        query = " AND ".join(f'"{name}"' for name in names)
        both = matcher.matches(parse_query(query))
        chosen[event] = {
            "names": names,
            "query": query,
            "article_matches_inside": len(both & inside),
            "article_matches_outside": len(both - inside),
        }
    return chosen


def make_watches(docs: list[dict], articles, settings, like_from: int = 0) -> list[dict]:
    """Two watches per event (query, like), in the order of the events' first documents.

    The like watch describes the event's `like_from`-th document (0: the first), or its last when it has fewer.
    """
    from flows.embedding import get_embedder

    by_event: dict[str, list[dict]] = {}
    for doc in docs:
        by_event.setdefault(doc["story_id"], []).append(doc)
    first_doc = {event: members[min(like_from, len(members) - 1)] for event, members in by_event.items()}
    names = choose_names(docs, articles)
    descriptions = [first_sentence(first_doc[event]["text"]) for event in first_doc]
    vectors, _ = get_embedder(settings).embed(descriptions)
    watches = []
    for (event, doc), description, vector in zip(first_doc.items(), descriptions, vectors):
        watches.append({"name": f"q:{event}", "kind": "query", "event": event, "query": names[event]["query"],
                        "names": names[event]["names"], "offline_inside": names[event]["article_matches_inside"],
                        "offline_outside": names[event]["article_matches_outside"]})
        watches.append({"name": f"like:{event}", "kind": "like", "event": event, "like": description,
                        "from_doc": doc["doc_id"], "vector": np.asarray(vector, dtype=np.float32)})
    return watches


def ingest(docs: list[dict], watches: list[dict], folder: Path, db: Path, settings) -> dict:
    """Store the watches, ingest the article files with the flow; the stored articles, vectors and alerts."""
    from datetime import UTC, datetime

    from flows.embedding import embedding_model_key
    from flows.ingest import ingest_fixtures
    from warehouse.connection import open_warehouse
    from warehouse.sql import transaction
    from warehouse.watches import add_watch

    for path in (db, Path(f"{db}.wal")):
        path.unlink(missing_ok=True)
    with open_warehouse(db) as connection, transaction(connection):
        for watch in watches:
            watch["watch_id"] = add_watch(
                connection, watch["name"], query=watch.get("query"), like_text=watch.get("like"),
                like_vector=watch.get("vector"), like_model=embedding_model_key(settings) if watch["kind"] == "like" else None,
                min_articles=1, min_sources=1, notify_urls=[], now=datetime.now(UTC),
            )
    started = time.perf_counter()
    summary = ingest_fixtures(folder, db, settings)
    seconds = time.perf_counter() - started
    with open_warehouse(db, read_only=True) as connection:
        rows = connection.execute("SELECT url, story_id, text_hash FROM articles").fetchall()
        alerts = connection.execute("SELECT watch_id, story_id, kind FROM alerts").fetchall()
        vectors = dict(connection.execute(
            "SELECT text_hash, vector FROM embeddings WHERE model = ?", [embedding_model_key(settings)]).fetchall())
        stored_watch_vectors = dict(connection.execute(
            "SELECT watch_id, like_vector FROM watches WHERE like_vector IS NOT NULL").fetchall())
    story = {doc_id_of(url): story_id for url, story_id, _ in rows}
    vector = {doc_id_of(url): np.asarray(vectors[text_hash], dtype=np.float32) for url, _, text_hash in rows}
    alerted: dict[int, set[str]] = defaultdict(set)
    kinds = Counter()
    for watch_id, story_id, kind in alerts:
        alerted[watch_id].add(story_id)
        kinds[kind] += 1
    return {
        "story": story, "vector": vector, "alerted": alerted, "alert_kinds": dict(kinds), "seconds": seconds,
        "watch_vectors": {watch_id: np.asarray(v, dtype=np.float32) for watch_id, v in stored_watch_vectors.items()},
        "new_articles": summary.new_articles, "alerts": summary.alerts,
    }


def score_watch(event: str, stories: set[str], story_of: dict[str, str], gold: dict[str, str], order: dict[str, int]) -> dict:
    """Article and story precision, recall and F1 of one watch's alerted stories."""
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id, story_id in story_of.items():
        members[story_id].append(doc_id)
    in_alerted = [doc_id for story_id in stories for doc_id in members.get(story_id, [])]
    event_docs = [doc_id for doc_id, label in gold.items() if label == event]
    correct = sum(gold[doc_id] == event for doc_id in in_alerted)
    recall = sum(story_of.get(doc_id) in stories for doc_id in event_docs) / len(event_docs)
    precision = correct / len(in_alerted) if in_alerted else None
    majority_right = 0
    for story_id in stories:
        counts = Counter(gold[doc_id] for doc_id in members.get(story_id, []))
        if counts:
            top = max(counts.values())
            winner = min((label for label, count in counts.items() if count == top), key=order.__getitem__)
            majority_right += winner == event
    story_precision = majority_right / len(stories) if stories else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"stories": len(stories), "articles": len(in_alerted), "precision": precision, "story_precision": story_precision,
            "recall": recall, "f1": f1}


def macro(scores: list[dict]) -> dict:
    """Macro averages: precision over the watches that alerted, recall and F1 over all."""
    alerted = [s for s in scores if s["stories"]]

    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else 0.0

    precision = mean(s["precision"] for s in alerted)
    recall = mean(s["recall"] for s in scores)
    beta2 = BETA * BETA
    f_beta = mean(
        (1 + beta2) * s["precision"] * s["recall"] / (beta2 * s["precision"] + s["recall"])
        if s["stories"] and s["precision"] and s["recall"] else 0.0
        for s in scores
    )
    return {
        "watches": len(scores),
        "silent": len(scores) - len(alerted),
        "precision": round(precision, 4),
        "story_precision": round(mean(s["story_precision"] for s in alerted), 4),
        "recall": round(recall, 4),
        "f1": round(mean(s["f1"] for s in scores), 4),
        "f05": round(f_beta, 4),
        "mean_alerted_stories": round(mean(s["stories"] for s in scores), 2),
        "perfect": sum(1 for s in scores if s["stories"] and s["precision"] == 1 and s["recall"] == 1),
    }


def like_alerts_offline(watches: list[dict], run: dict, threshold: float) -> dict[int, set[str]]:
    """The stories each like watch alerts at this threshold, computed from the stored vectors and stories."""
    doc_ids = sorted(run["vector"])
    matrix = np.stack([run["vector"][doc_id] for doc_id in doc_ids]).astype(np.float32)
    likes = [w for w in watches if w["kind"] == "like"]
    similarities = matrix @ np.stack([run["watch_vectors"][w["watch_id"]] for w in likes]).astype(np.float32).T
    return {
        watch["watch_id"]: {run["story"][doc_ids[row]] for row in np.flatnonzero(similarities[:, column] >= np.float32(threshold))}
        for column, watch in enumerate(likes)
    }


def choose_threshold(curve: list[dict]) -> dict:
    """The threshold of the best macro F1, and of the best macro F0.5 (prefers precision); ties: the higher threshold."""
    best_f1 = max(curve, key=lambda row: (row["f1"], row["threshold"]))
    best_f05 = max(curve, key=lambda row: (row["f05"], row["threshold"]))
    return {"best_f1": best_f1["threshold"], "best_f05": best_f05["threshold"]}


def parse_thresholds(text: str) -> list[float]:
    """`0.3,0.35,…` or `START:STOP:STEP` (inclusive)."""
    if ":" in text:
        start, stop, step = (float(part) for part in text.split(":"))
        count = int(round((stop - start) / step)) + 1
        return [round(start + step * index, 4) for index in range(count)]
    return [float(part) for part in text.split(",") if part.strip()]


def evaluate(docs: list[dict], thresholds: list[float], check: float | None, run_threshold: float | None,
             rule: str, like_from: int = 0, verify: bool = True) -> dict:
    """The whole evaluation (see the module docstring); `check` None: check the chosen threshold."""
    from flows.settings import Settings

    gold = {doc["doc_id"]: doc["story_id"] for doc in docs}
    order = {}
    for doc in docs:
        order.setdefault(doc["story_id"], len(order))
    base = Settings()
    run_threshold = base.watch_like_threshold if run_threshold is None else run_threshold
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = scratch / "articles"
        write_files(docs, folder)
        articles = read_articles(folder)
        watches = make_watches(docs, articles, base, like_from)
        first = ingest(docs, watches, folder, scratch / "run1.duckdb", base.model_copy(update={"watch_like_threshold": run_threshold}))
        missing = {story_id for stories in first["alerted"].values() for story_id in stories} - set(first["story"].values())

        def scores_of(kind: str, alerted: dict[int, set[str]], run: dict) -> list[dict]:
            return [
                {"watch": w["name"], **score_watch(w["event"], alerted.get(w["watch_id"], set()), run["story"], gold, order)}
                for w in watches if w["kind"] == kind
            ]

        query_scores = scores_of("query", first["alerted"], first)
        # What the stories allow: alerting exactly the stories that hold the event's articles (recall 1).
        ceiling = macro([
            score_watch(event, {first["story"][d] for d, label in gold.items() if label == event}, first["story"], gold, order)
            for event in order
        ])
        like_scores = scores_of("like", first["alerted"], first)
        # Offline prediction of the query watches: the stories of the articles each query matches.
        from extract.query import BatchMatcher, parse_query

        matcher = BatchMatcher((doc_id, title, text) for doc_id, (title, text) in articles.items())
        query_agree = sum(
            {first["story"][d] for d in matcher.matches(parse_query(w["query"]))} == first["alerted"].get(w["watch_id"], set())
            for w in watches if w["kind"] == "query"
        )
        offline_at_run = like_alerts_offline(watches, first, run_threshold)
        like_agree = sum(offline_at_run[w] == first["alerted"].get(w, set()) for w in offline_at_run)
        curve = []
        for threshold in thresholds:
            predicted = like_alerts_offline(watches, first, threshold)
            curve.append({"threshold": threshold, **macro(scores_of("like", predicted, first))})
        choice = choose_threshold(curve)
        chosen = choice[rule]
        check = chosen if check is None else check
        verification = None
        if verify:
            if abs(check - run_threshold) < 1e-9:
                second = first
            else:
                second = ingest(docs, watches, folder, scratch / "run2.duckdb",
                                base.model_copy(update={"watch_like_threshold": check}))
            predicted = like_alerts_offline(watches, first, check)
            real = {w["watch_id"]: second["alerted"].get(w["watch_id"], set()) for w in watches if w["kind"] == "like"}
            same_stories = second["story"] == first["story"]
            verification = {
                "threshold": check,
                "like_watches_agreeing": f"{sum(predicted[w] == real[w] for w in real)}/{len(real)}",
                "stories_identical_to_first_run": same_stories,
                "real": macro(scores_of("like", real, second)),
                "offline": next((row for row in curve if abs(row["threshold"] - check) < 1e-9), None),
                "seconds": round(second["seconds"], 1),
            }
    return {
        "documents": len(docs),
        "events": len(order),
        "stored": len(first["story"]),
        "stories_found": len(set(first["story"].values())),
        "run_threshold": run_threshold,
        "ingest_seconds": round(first["seconds"], 1),
        "alerts": first["alert_kinds"],
        "alerted_stories_missing_at_end": len(missing),
        "query_offline_agreement": f"{query_agree}/{len(query_scores)}",
        "like_offline_agreement_at_run_threshold": f"{like_agree}/{len(like_scores)}",
        "like_from": like_from,
        "ceiling": ceiling,
        "query": macro(query_scores),
        "like": macro(like_scores),
        "like_curve": curve,
        "chosen": choice,
        "rule": rule,
        "verification": verification,
        "query_watches": [
            {**{k: w[k] for k in ("name", "query", "offline_inside", "offline_outside")}, **s}
            for w, s in zip([w for w in watches if w["kind"] == "query"], query_scores)
        ],
        "like_watches": [
            {**{k: w[k] for k in ("name", "like", "from_doc")}, **s}
            for w, s in zip([w for w in watches if w["kind"] == "like"], like_scores)
        ],
    }


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def print_report(result: dict, per_watch: bool) -> None:
    print(f"{result['documents']} documents, {result['events']} events; stored {result['stored']} in "
          f"{result['stories_found']} stories; ingest {result['ingest_seconds']} s; like threshold of the run "
          f"{result['run_threshold']}; alerts {result['alerts']}")
    print(f"alerts equal to the offline prediction: query {result['query_offline_agreement']}, like "
          f"{result['like_offline_agreement_at_run_threshold']}; alerted stories gone at the end: "
          f"{result['alerted_stories_missing_at_end']}")
    print()
    columns = ("watches", "silent", "precision", "story_precision", "recall", "f1", "f05", "mean_alerted_stories", "perfect")
    print("| watches | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for kind in ("ceiling", "query", "like"):
        label = {"ceiling": "the stories' ceiling", "query": "query"}.get(kind, f"like @ {result['run_threshold']}")
        print(f"| {label} | " + " | ".join(_fmt(result[kind][c]) for c in columns) + " |")
    print()
    print("like threshold sweep (offline, from the stored vectors):")
    print("| threshold | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in result["like_curve"]:
        print(f"| {row['threshold']:.2f} | " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    print(f"best macro F1 at {result['chosen']['best_f1']}, best macro F0.5 at {result['chosen']['best_f05']}; "
          f"chosen ({result['rule']}): {result['chosen'][result['rule']]}")
    if result["verification"]:
        v = result["verification"]
        print(f"real ingest at {v['threshold']}: like watches whose alerts equal the offline prediction "
              f"{v['like_watches_agreeing']}, same stories as the first run: {v['stories_identical_to_first_run']}, "
              f"{v['seconds']} s; real: " + ", ".join(f"{c} {_fmt(v['real'][c])}" for c in columns))
    if per_watch:
        print()
        for row in result["query_watches"] + result["like_watches"]:
            what = row.get("query") or row.get("like")
            print(f"{row['watch']:16} stories {row['stories']:2} P {_fmt(row['precision'])} R {_fmt(row['recall'])} "
                  f"F1 {_fmt(row['f1'])}  {what[:90]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with docs.jsonl")
    parser.add_argument("--thresholds", default="0.30:0.80:0.05", help="like thresholds to sweep: a,b,c or START:STOP:STEP")
    parser.add_argument("--run-threshold", type=float, default=None,
                        help="like threshold of the first real ingest (default: the setting's default)")
    parser.add_argument("--check", type=float, default=None, help="threshold to check with a real ingest (default: the chosen one)")
    parser.add_argument("--rule", choices=("best_f1", "best_f05"), default="best_f1", help="how the threshold is chosen")
    parser.add_argument("--no-check", action="store_true", help="skip the second real ingest")
    parser.add_argument("--like-from", type=int, default=0, metavar="N",
                        help="describe each event by its N-th document's first sentence (0: its first document)")
    parser.add_argument("--per-watch", action="store_true", help="also print every watch's scores")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not (args.data / "docs.jsonl").is_file():
        print(f"evaluate_watches: error: {args.data / 'docs.jsonl'} not found", file=sys.stderr)
        return 2
    result = evaluate(read_docs(args.data), parse_thresholds(args.thresholds), args.check, args.run_threshold, args.rule,
                      args.like_from, not args.no_check)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result, args.per_watch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
