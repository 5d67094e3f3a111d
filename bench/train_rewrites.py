"""Fit the rewrite model (`extract/rewrite_model.json`) on labelled pairs and record how well it does.

Pairs:
- rewrites: every (original, rewrite) line of `--rewrites`/pairs.jsonl (the layout of
  `R1_llmfake_rewrites/dev`);
- different articles on one event: pairs of `--events`/docs.jsonl (the layout of ECB+
  `B1_ecbplus_events/dev`) with the same `story_id` whose word 5-shingle containment (shorter in
  longer) is under 0.1 (pairs sharing more wire text are left out);
- different articles: pairs of different stories, and originals of different groups, whose
  whole-article cosine is at least `--negative-cosine` (the others are never candidates).

Every text is embedded whole with the pipeline's own settings (`flows.settings.Settings`), the
evidence is `extract.rewrites.evidence`, and the model is scikit-learn's logistic regression on
standardised features. Recorded with it: the data, the pair counts, 5-fold cross-validated
recall and false positives at several thresholds, the Brier score and a reliability table, and
a fingerprint (the probability of a sample of the training pairs, which
`tests/test_rewrites.py` recomputes).

Example:
    python bench/train_rewrites.py --rewrites ../shared/eval/R1_llmfake_rewrites/dev \\
        --events ../shared/eval/B1_ecbplus_events/dev --output extract/rewrite_model.json
"""

import argparse
import itertools
import json
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
from evaluate_rewrites import SHARED_WIRE, containment, read_pairs  # sibling scripts
from evaluate_stories import read_docs, word_shingles

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
FINGERPRINT_PAIRS = 40


def labelled_pairs(pairs: list[dict], events: list[dict], vectors: dict[str, np.ndarray], texts: dict[str, str],
                   negative_cosine: float) -> list[tuple[str, str, int, str]]:
    """(text key, text key, label, kind) of every training pair."""
    labelled = [(f"original:{p['group']}", f"rewrite:{i}", 1, "rewrite") for i, p in enumerate(pairs)]
    shingles = {key: word_shingles(text) for key, text in texts.items()}
    events_by_story: dict[str, list[str]] = {}
    for doc in events:
        events_by_story.setdefault(doc["story_id"], []).append(f"event:{doc['doc_id']}")
    for members in events_by_story.values():
        for a, b in itertools.combinations(members, 2):
            if containment(shingles[a], shingles[b]) < SHARED_WIRE:
                labelled.append((a, b, 0, "same event"))
    story = {f"event:{doc['doc_id']}": doc["story_id"] for doc in events}
    story.update({f"original:{p['group']}": f"r:{p['group']}" for p in pairs})
    keys = sorted(story)
    matrix = np.stack([vectors[key] for key in keys])
    similar = np.triu(matrix @ matrix.T, 1) >= negative_cosine
    for i, j in zip(*np.nonzero(similar)):
        a, b = keys[i], keys[j]
        if story[a] != story[b] and containment(shingles[a], shingles[b]) < SHARED_WIRE:
            labelled.append((a, b, 0, "different"))
    return labelled


def cross_validated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    from extract.rewrites import fit

    predicted = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        predicted[test] = fit(x[train], y[train], seed=seed).probabilities(x[test])
    return predicted


def metrics(predicted: np.ndarray, y: np.ndarray, kinds: list[str]) -> dict:
    negatives = np.sort(predicted[y == 0])
    kinds_array = np.array(kinds)
    bins = np.linspace(0, 1, 11)
    reliability = []
    for low, high in itertools.pairwise(bins):
        inside = (predicted >= low) & (predicted < high if high < 1 else predicted <= high)
        if inside.any():
            reliability.append({"from": round(low, 1), "to": round(high, 1), "pairs": int(inside.sum()),
                                "mean_probability": round(float(predicted[inside].mean()), 4),
                                "share_rewrites": round(float(y[inside].mean()), 4)})
    return {
        "at_threshold": {
            str(t): {"recall": round(float(np.mean(predicted[y == 1] >= t)), 4),
                     "false_positives": {kind: int(np.sum((predicted >= t) & (y == 0) & (kinds_array == kind)))
                                         for kind in ("same event", "different")}}
            for t in THRESHOLDS
        },
        "recall_at_zero_false_positives": round(float(np.mean(predicted[y == 1] > negatives[-1])), 4),
        "brier": round(float(np.mean((predicted - y) ** 2)), 5),
        "reliability": reliability,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewrites", type=Path, required=True, help="folder with pairs.jsonl")
    parser.add_argument("--events", type=Path, required=True, help="folder with docs.jsonl")
    parser.add_argument("--output", type=Path, required=True, help="where to write the model (JSON)")
    parser.add_argument("--negative-cosine", type=float, default=0.6,
                        help="whole-article cosine from which pairs of different stories are negatives")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for source in (args.rewrites / "pairs.jsonl", args.events / "docs.jsonl"):
        if not source.is_file():
            print(f"train_rewrites: error: {source} not found", file=sys.stderr)
            return 2

    import sklearn

    from extract.rewrites import FEATURES, evidence, fit, profile
    from flows.embedding import get_embedder
    from flows.settings import Settings

    settings = Settings()
    pairs, events = read_pairs(args.rewrites), read_docs(args.events)
    texts = {f"event:{doc['doc_id']}": doc["text"] for doc in events}
    for index, pair in enumerate(pairs):
        texts.setdefault(f"original:{pair['group']}", pair["original"])
        texts[f"rewrite:{index}"] = pair["rewrite"]
    keys = sorted(texts)
    embedded, _ = get_embedder(settings).embed([texts[key] for key in keys])
    vectors = dict(zip(keys, embedded))
    profiles = {key: profile(texts[key], settings.term_language) for key in keys}
    labelled = labelled_pairs(pairs, events, vectors, texts, args.negative_cosine)
    x = np.stack([evidence(profiles[a], profiles[b], float(vectors[a] @ vectors[b])) for a, b, _, _ in labelled])
    y = np.array([label for _, _, label, _ in labelled])
    kinds = [kind for _, _, _, kind in labelled]

    model = fit(x, y, seed=args.seed)
    sample = random.Random(args.seed).sample(range(len(labelled)), min(FINGERPRINT_PAIRS, len(labelled)))
    positives = [i for i in range(len(labelled)) if y[i] == 1]
    sample = sorted(set(sample) | set(random.Random(args.seed + 1).sample(positives, min(FINGERPRINT_PAIRS // 2, len(positives)))))
    probabilities = model.probabilities(x)
    trained_at = datetime.now(UTC).replace(microsecond=0)
    metadata = {
        "trained_at": trained_at.isoformat(),
        "trained_with": f"scikit-learn {sklearn.__version__} LogisticRegression(C=1.0), standardised features",
        "embedding": settings.model,
        "data": {"rewrites": args.rewrites.name if args.rewrites.name != "dev" else f"{args.rewrites.parent.name}/dev",
                 "events": args.events.name if args.events.name != "dev" else f"{args.events.parent.name}/dev",
                 "negative_cosine": args.negative_cosine},
        "pairs": {kind: kinds.count(kind) for kind in ("rewrite", "same event", "different")},
        "cross_validated": metrics(cross_validated(x, y, seed=args.seed), y, kinds),
        "training_fit": metrics(probabilities, y, kinds),
        "fingerprint": [{"a": labelled[i][0], "b": labelled[i][1], "label": int(y[i]),
                         "probability": round(float(probabilities[i]), 6)} for i in sample],
    }
    model = type(model)(f"{trained_at:%Y%m%d}-lr{len(FEATURES)}", model.features, model.mean, model.scale,
                        model.coefficients, model.intercept, metadata)
    args.output.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    summary = metadata["cross_validated"]
    print(f"pairs: {metadata['pairs']}")
    print(f"coefficients: {dict(zip(FEATURES, np.round(model.coefficients, 3)))}, intercept {model.intercept:.3f}")
    for threshold, scores in summary["at_threshold"].items():
        print(f"cross-validated at {threshold}: recall {scores['recall']}, false positives {scores['false_positives']}")
    print(f"cross-validated recall at zero false positives: {summary['recall_at_zero_false_positives']}, Brier {summary['brier']}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
