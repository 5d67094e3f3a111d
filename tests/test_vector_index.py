"""The vector index beside the warehouse: kept in step with DuckDB, rebuilt when lost or stale."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flows.pipeline import PreparedArticle, article_id_for, dedupe_and_cluster, nearest_stored
from flows.settings import Settings
from extract.content import Article
from warehouse.connection import open_warehouse
from warehouse.load import ArticleRow, EmbeddingRow, LoadBatch, load_batch
from warehouse.vector_index import VectorIndex, article_ids_of, discard_indexes, index_folder, keys_of

MODEL = "test-model@128"
DIMENSIONS = 8
START = datetime(2026, 11, 1, tzinfo=UTC)


def unit(rng, n=1):
    x = rng.standard_normal((n, DIMENSIONS))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def store(db, vectors, first=0, when=START):
    """Load one batch of articles with these vectors (one story each)."""
    rows, embeddings = [], []
    for i, vector in enumerate(vectors, start=first):
        url = f"https://example.org/{i}"
        article_id = article_id_for(url)
        rows.append(ArticleRow(
            article_id=article_id, url=url, canonical_url=url, title=f"t{i}", published_at=when, ingested_at=when,
            text=f"text {i}", text_hash=f"h{i}", author=None, language="en", site_name=None, source="test",
            duplicate_of=None, duplicate_kind=None, duplicate_similarity=None, story_id=article_id, story_similarity=1.0,
        ))
        embeddings.append(EmbeddingRow(f"h{i}", MODEL, vector.tolist(), 1, when))
    with open_warehouse(db) as connection:
        load_batch(connection, LoadBatch(rows, embeddings, {row.article_id: {} for row in rows}))
    return [row.article_id for row in rows]


def nearest(db, query, k=3, exact_limit=50_000):
    index = VectorIndex(db, MODEL, DIMENSIONS, exact_limit=exact_limit)
    with open_warehouse(db) as connection:
        added = index.sync(connection)
    if index.changed:
        index.save()
    return index, added, index.search(query, k)


def test_keys_round_trip_every_article_id():
    ids = ["0000000000000000", "7fffffffffffffff", "8000000000000000", "fffffffffffffffe", article_id_for("x")]
    assert article_ids_of(keys_of(ids)) == ids


def test_built_from_the_warehouse_then_only_new_batches_are_added(tmp_path):
    db = tmp_path / "nw.duckdb"
    rng = np.random.default_rng(0)
    vectors = unit(rng, 20)
    ids = store(db, vectors[:10])
    index, added, found = nearest(db, vectors[3:4])
    assert added == 10 and len(index) == 10
    assert next(iter(found[0])) == ids[3]
    assert found[0][ids[3]] == pytest.approx(1.0, abs=1e-5)

    _, added, _ = nearest(db, vectors[:1])
    assert added == 0  # saved and unchanged: nothing to add

    later = store(db, vectors[10:], first=10, when=START + timedelta(hours=1))
    index, added, found = nearest(db, vectors[15:16])
    assert added == 10 and len(index) == 20
    assert next(iter(found[0])) == later[5]


def test_a_lost_or_damaged_index_is_rebuilt_with_the_same_answers(tmp_path):
    db = tmp_path / "nw.duckdb"
    rng = np.random.default_rng(1)
    vectors = unit(rng, 30)
    store(db, vectors)
    _, _, expected = nearest(db, vectors[:5], k=4)

    discard_indexes(db)
    _, added, found = nearest(db, vectors[:5], k=4)
    assert added == 30 and found == expected

    for path in index_folder(db).glob("*.faiss"):
        path.write_bytes(b"not an index")
    _, added, found = nearest(db, vectors[:5], k=4)
    assert added == 30 and found == expected


def test_an_index_that_disagrees_with_the_warehouse_is_rebuilt(tmp_path):
    db = tmp_path / "nw.duckdb"
    rng = np.random.default_rng(2)
    vectors = unit(rng, 12)
    store(db, vectors[:6])
    nearest(db, vectors[:1])
    with open_warehouse(db) as connection:  # an article removed behind the index's back
        connection.execute("DELETE FROM articles WHERE url = 'https://example.org/0'").fetchall()
    index, added, found = nearest(db, vectors[:1], k=6)
    assert added == 5 and len(index) == 5
    assert article_id_for("https://example.org/0") not in found[0]


def test_a_grown_index_moves_to_the_graph_and_still_finds_neighbours(tmp_path):
    db = tmp_path / "nw.duckdb"
    rng = np.random.default_rng(3)
    vectors = unit(rng, 300)
    ids = store(db, vectors[:40])
    index, _, _ = nearest(db, vectors[:1], exact_limit=50)
    assert index.state.kind == "exact"
    ids += store(db, vectors[40:], first=40, when=START + timedelta(hours=1))
    index, added, found = nearest(db, vectors[:300:10], k=1, exact_limit=50)
    assert index.state.kind == "graph" and added == 260 and len(index) == 300
    assert [next(iter(hits)) for hits in found] == ids[:300:10]
    # and a rebuild from scratch goes straight to the graph
    discard_indexes(db)
    index, added, found = nearest(db, vectors[:300:10], k=1, exact_limit=50)
    assert index.state.kind == "graph" and added == 300
    assert [next(iter(hits)) for hits in found] == ids[:300:10]


def test_dedupe_and_cluster_compares_with_stored_neighbours_only(tmp_path):
    """A new near-copy of a stored article is found through the index among many stored articles."""
    db = tmp_path / "nw.duckdb"
    rng = np.random.default_rng(4)
    vectors = unit(rng, 200)
    ids = store(db, vectors)
    settings = Settings(db=db, model="test-model", history_neighbours=5)
    copy = vectors[17] + 0.01 * unit(rng)[0]
    copy /= np.linalg.norm(copy)
    url = "https://example.org/new"
    item = PreparedArticle(
        Article(url=url, title="t", text="text 17", published_at=START + timedelta(hours=2)),
        article_id_for(url), url, "h-new", __import__("collections").Counter(), START + timedelta(hours=2),
        copy.astype(np.float32),
    )
    with open_warehouse(db) as connection:
        near = nearest_stored(connection, db, copy[None, :].astype(np.float32), settings)
    assert len(near[0]) >= 5 and ids[17] in near[0]
    verdicts = dedupe_and_cluster([item], db, settings)
    assert verdicts.duplicates[item.article_id].original_id == ids[17]
    assert verdicts.stories[item.article_id].story_id == ids[17]
