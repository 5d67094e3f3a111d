"""Embedding ahead: texts handed over while a run is still fetching come back as the run would embed them."""

import logging
from datetime import UTC, datetime

import numpy as np
import pytest

from extract.content import article_from_text, text_hash
from extract.openvino_backend import openvino_installed
from flows import embedding
from flows.settings import Settings
from tests.seed_site import SEEDS
from warehouse.connection import open_warehouse


needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="embedding ahead runs on OpenVINO only")


@pytest.fixture(scope="module")
def seed_texts():
    return [article_from_text(path.read_text(encoding="utf-8"), path.as_uri()).text for path in sorted(SEEDS.glob("*.txt"))]


@needs_openvino
def test_prefetched_vectors_equal_the_run_s_own(tmp_path, seed_texts):
    settings = Settings()
    prefetch = embedding.EmbeddingPrefetch(tmp_path / "p.duckdb", settings, batch_articles=2)
    for text in seed_texts + seed_texts[:1]:  # a repeated text is embedded once
        prefetch.add(text)
    got = prefetch.finish()
    assert set(got) == {text_hash(text) for text in seed_texts}
    vectors, counts, _ = embedding.embed_texts(seed_texts, settings)
    # The thread batches texts as they arrive, and OpenVINO's vectors move by up to 1.6e-4 with the
    # batch's padded shape (the seeds' second text embedded alone or beside the first), so the
    # tolerance is the backend's own, not float rounding; another text's vector is ~0.1 away.
    for text, vector, count in zip(seed_texts, vectors, counts):
        np.testing.assert_allclose(got[text_hash(text)][0], vector, atol=1e-3)
        assert got[text_hash(text)][1] == count


@needs_openvino
def test_texts_with_stored_vectors_are_not_embedded_again(tmp_path, seed_texts, monkeypatch):
    db = tmp_path / "s.duckdb"
    settings = Settings()
    with open_warehouse(db) as connection:
        connection.execute(
            "INSERT INTO embeddings VALUES (?, ?, ?, 1, ?)",
            [text_hash(seed_texts[0]), embedding.embedding_model_key(settings), [0.0] * 384, datetime.now(UTC)],
        ).fetchall()
    asked = []
    real = embedding.embed_texts
    monkeypatch.setattr(embedding, "embed_texts", lambda texts, s: asked.extend(texts) or real(texts, s))
    prefetch = embedding.EmbeddingPrefetch(db, settings)
    for text in seed_texts:
        prefetch.add(text)
    assert set(prefetch.finish()) == {text_hash(text) for text in seed_texts[1:]}
    assert asked and seed_texts[0] not in asked


@needs_openvino
def test_a_failure_leaves_the_texts_to_the_run(tmp_path, seed_texts, monkeypatch, caplog):
    def broken(texts, settings):
        raise RuntimeError("model gone")

    monkeypatch.setattr(embedding, "embed_texts", broken)
    prefetch = embedding.EmbeddingPrefetch(tmp_path / "f.duckdb", Settings())
    with caplog.at_level(logging.WARNING, logger="flows.embedding"):
        for text in seed_texts:
            prefetch.add(text)
        assert prefetch.finish() == {}
    assert "embedding ahead failed, the run embeds its texts itself: RuntimeError: model gone" in caplog.text


def test_on_torch_the_texts_are_left_to_the_run(tmp_path, seed_texts, monkeypatch):
    asked = []
    monkeypatch.setattr(embedding, "embed_texts", lambda texts, settings: asked.append(texts))
    prefetch = embedding.EmbeddingPrefetch(tmp_path / "t.duckdb", Settings(embed_backend="torch"))
    for text in seed_texts:
        prefetch.add(text)
    assert prefetch.finish() == {} and asked == []


def test_nothing_added_starts_nothing(tmp_path):
    assert embedding.EmbeddingPrefetch(tmp_path / "n.duckdb", Settings()).finish() == {}
    assert not (tmp_path / "n.duckdb").exists()


def test_stored_or_embed_takes_stored_then_prefetched_vectors_and_embeds_only_the_rest(tmp_path):
    db = tmp_path / "s.duckdb"
    settings = Settings()
    with open_warehouse(db) as connection:
        connection.execute(
            "INSERT INTO embeddings VALUES (?, ?, ?, 1, ?)",
            ["a", embedding.embedding_model_key(settings), [0.5, 0.5], datetime.now(UTC)],
        ).fetchall()
    prefetched = {"b": (np.array([0.0, 1.0]), 2, False), "a": (np.array([9.0, 9.0]), 9, False)}
    asked = []

    def embed_rest(texts):
        asked.append(texts)
        return [np.array([float(len(asked)), 0.0])] * len(texts), [1] * len(texts), [True] * len(texts)

    texts = {"a": "text a", "b": "text b", "c": "text c", "d": "text d"}
    embedded = embedding.stored_or_embed(texts, db, settings, prefetched=prefetched, embed=embed_rest)
    assert asked == [["text c", "text d"]]  # once, for what is neither stored nor prefetched
    assert [embedded.vector(digest).tolist() for digest in texts] == [[0.5, 0.5], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    rows = embedded.rows("key")
    assert sorted((row.text_hash, row.chunk_count) for row in rows) == [("b", 2), ("c", 1), ("d", 1)]
    assert {row.model for row in rows} == {"key"}
    # A lead that is its whole text is stored as the whole article's vector too.
    both = embedded.rows("key@lead", "key")
    assert sorted((row.text_hash, row.model) for row in both) == [
        ("b", "key@lead"), ("c", "key"), ("c", "key@lead"), ("d", "key"), ("d", "key@lead")]
    assert embedding.stored_or_embed({"a": "text a"}, db, settings, embed=embed_rest).computed == {} and len(asked) == 1
