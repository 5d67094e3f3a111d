"""Embedding ahead: texts handed over while a run is still fetching come back as the run would embed them."""

import logging
from datetime import UTC, datetime

import numpy as np
import pytest

from extract.content import article_from_text, text_hash
from extract.embed import openvino_installed
from flows import pipeline
from flows.settings import Settings
from tests.conftest import SEEDS
from warehouse.connection import open_warehouse


needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="embedding ahead runs on OpenVINO only")


@pytest.fixture(scope="module")
def seed_texts():
    return [article_from_text(path.read_text(encoding="utf-8"), path.as_uri()).text for path in sorted(SEEDS.glob("*.txt"))]


@needs_openvino
def test_prefetched_vectors_equal_the_run_s_own(tmp_path, seed_texts):
    settings = Settings()
    prefetch = pipeline.EmbeddingPrefetch(tmp_path / "p.duckdb", settings, batch_articles=2)
    for text in seed_texts + seed_texts[:1]:  # a repeated text is embedded once
        prefetch.add(text)
    got = prefetch.finish()
    assert set(got) == {text_hash(text) for text in seed_texts}
    vectors, counts = pipeline.embed_texts(seed_texts, settings)
    for text, vector, count in zip(seed_texts, vectors, counts):
        np.testing.assert_allclose(got[text_hash(text)][0], vector, atol=1e-5)
        assert got[text_hash(text)][1] == count


@needs_openvino
def test_texts_with_stored_vectors_are_not_embedded_again(tmp_path, seed_texts, monkeypatch):
    db = tmp_path / "s.duckdb"
    settings = Settings()
    with open_warehouse(db) as connection:
        connection.execute(
            "INSERT INTO embeddings VALUES (?, ?, ?, 1, ?)",
            [text_hash(seed_texts[0]), pipeline.embedding_model_key(settings), [0.0] * 384, datetime.now(UTC)],
        ).fetchall()
    asked = []
    real = pipeline.embed_texts
    monkeypatch.setattr(pipeline, "embed_texts", lambda texts, s: asked.extend(texts) or real(texts, s))
    prefetch = pipeline.EmbeddingPrefetch(db, settings)
    for text in seed_texts:
        prefetch.add(text)
    assert set(prefetch.finish()) == {text_hash(text) for text in seed_texts[1:]}
    assert asked and seed_texts[0] not in asked


@needs_openvino
def test_a_failure_leaves_the_texts_to_the_run(tmp_path, seed_texts, monkeypatch, caplog):
    def broken(texts, settings):
        raise RuntimeError("model gone")

    monkeypatch.setattr(pipeline, "embed_texts", broken)
    prefetch = pipeline.EmbeddingPrefetch(tmp_path / "f.duckdb", Settings())
    with caplog.at_level(logging.WARNING, logger="flows.pipeline"):
        for text in seed_texts:
            prefetch.add(text)
        assert prefetch.finish() == {}
    assert "embedding ahead failed, the run embeds its texts itself: RuntimeError: model gone" in caplog.text


def test_on_torch_the_texts_are_left_to_the_run(tmp_path, seed_texts, monkeypatch):
    asked = []
    monkeypatch.setattr(pipeline, "embed_texts", lambda texts, settings: asked.append(texts))
    prefetch = pipeline.EmbeddingPrefetch(tmp_path / "t.duckdb", Settings(embed_backend="torch"))
    for text in seed_texts:
        prefetch.add(text)
    assert prefetch.finish() == {} and asked == []


def test_nothing_added_starts_nothing(tmp_path):
    assert pipeline.EmbeddingPrefetch(tmp_path / "n.duckdb", Settings()).finish() == {}
    assert not (tmp_path / "n.duckdb").exists()


def test_missing_vectors_keep_their_order_and_only_the_rest_is_embedded():
    missing = {"a": "text a", "b": "text b", "c": "text c"}
    prefetched = {"b": (np.array([0.0, 1.0]), 2)}
    asked = []

    def embed_rest(texts):
        asked.append(texts)
        return [np.array([float(len(asked)), 0.0])] * len(texts), [1] * len(texts)

    vectors, counts = pipeline.vectors_with_prefetched(missing, prefetched, embed_rest)
    assert asked == [["text a", "text c"]]
    assert [v.tolist() for v in vectors] == [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]] and counts == [1, 2, 1]
    assert pipeline.vectors_with_prefetched({"b": "text b"}, prefetched, embed_rest)[1] == [2] and len(asked) == 1
