"""The rewrite evidence and model: a rewrite built here scores as one, a same-event article does not, the packaged model is what it says."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from extract.rewrites import FEATURES, RewriteModelError, evidence, load_model, profile
from flows.settings import Settings
from tests.rewrite_texts import ORIGINAL, OTHER, REWRITE

EVAL = Path(__file__).resolve().parents[1].parent / "shared" / "eval"

@pytest.fixture(scope="module")
def model():
    return load_model()


def test_a_rewrite_scores_as_one_and_another_article_on_the_event_does_not(model):
    threshold = Settings().rewrite_probability
    original = profile(ORIGINAL)
    # The same embedding cosine for both pairs: the text evidence must tell them apart.
    for cosine in (0.8, 0.85, 0.9):
        rewrite = model.probability(evidence(original, profile(REWRITE), cosine))
        other = model.probability(evidence(original, profile(OTHER), cosine))
        assert rewrite >= threshold > other, (cosine, rewrite, other)


def test_evidence_is_symmetric_and_condensing_keeps_it(model):
    a, b = profile(ORIGINAL), profile(REWRITE)
    assert np.array_equal(evidence(a, b, 0.9), evidence(b, a, 0.9))
    # Half of the rewrite (it condenses): still its original's.
    half = profile(" ".join(REWRITE.splitlines()[:3]))
    assert model.probability(evidence(a, half, 0.85)) >= Settings().rewrite_probability
    # The same sentences shuffled: the order evidence drops.
    shuffled = profile("\n".join(reversed(REWRITE.splitlines())))
    order = FEATURES.index("rare_word_order")
    assert evidence(a, shuffled, 0.9)[order] < evidence(a, b, 0.9)[order]


def test_a_model_file_is_checked_when_loaded(tmp_path, model):
    good = model.to_json()
    path = tmp_path / "model.json"
    path.write_text(json.dumps(good))
    assert load_model(path).probability(evidence(profile(ORIGINAL), profile(REWRITE), 0.9)) == pytest.approx(
        model.probability(evidence(profile(ORIGINAL), profile(REWRITE), 0.9)))
    for broken in ({**good, "features": good["features"][:-1]}, {**good, "scale": [0.0] * len(FEATURES)},
                   {**good, "coefficients": [float("nan")] * len(FEATURES)}, {k: v for k, v in good.items() if k != "mean"}):
        path.write_text(json.dumps(broken))
        with pytest.raises(RewriteModelError):
            load_model(path)
    path.write_text("{not json")
    with pytest.raises(RewriteModelError):
        load_model(path)


def test_the_packaged_model_records_its_training(model):
    assert model.version and model.features == FEATURES
    recorded = model.metadata
    assert set(recorded["pairs"]) == {"rewrite", "same event", "different"}
    assert recorded["cross_validated"]["at_threshold"]["0.5"]["recall"] > 0.5
    assert len(recorded["fingerprint"]) >= 20


@pytest.mark.skipif(not (EVAL / "R1_llmfake_rewrites" / "dev").is_dir() or not (EVAL / "B1_ecbplus_events" / "dev").is_dir(),
                    reason="the evaluation data (../shared/eval) is absent")
def test_the_packaged_model_scores_its_training_pairs_as_recorded(model):
    from flows.embedding import get_embedder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = {}
    for index, line in enumerate((EVAL / "R1_llmfake_rewrites" / "dev" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()):
        pair = json.loads(line)
        texts.setdefault(f"original:{pair['group']}", pair["original"])
        texts[f"rewrite:{index}"] = pair["rewrite"]
    for line in (EVAL / "B1_ecbplus_events" / "dev" / "docs.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        texts[f"event:{doc['doc_id']}"] = doc["text"]
    fingerprint = model.metadata["fingerprint"]
    keys = sorted({key for pair in fingerprint for key in (pair["a"], pair["b"])})
    vectors, _ = get_embedder(Settings()).embed([texts[key] for key in keys])
    vector = dict(zip(keys, vectors))
    for pair in fingerprint:
        a, b = pair["a"], pair["b"]
        probability = model.probability(evidence(profile(texts[a]), profile(texts[b]), float(vector[a] @ vector[b])))
        # Embedding backends round differently (1e-4 in a cosine).
        assert probability == pytest.approx(pair["probability"], abs=2e-3), (a, b)


def test_another_model_file_is_a_setting_and_a_bad_one_is_refused_in_one_line(tmp_path, model):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({**model.to_json(), "intercept": model.intercept - 50}))
    assert Settings(rewrite_model=path).dedupe_rules().model.intercept == pytest.approx(model.intercept - 50)
    with pytest.raises(ValueError, match="cannot read rewrite model"):
        Settings(rewrite_model=tmp_path / "missing.json")
