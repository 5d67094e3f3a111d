"""Extraction and embedding on a local 2-worker Dask cluster store the same results as the default runner."""

from datetime import UTC, datetime

import duckdb
import numpy as np
import pytest

from flows.ingest import ingest_feeds
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.feeds import add_feed

pytest.importorskip("prefect_dask")


def stored(db):
    connection = duckdb.connect(str(db), read_only=True)
    try:
        articles = connection.execute(
            "SELECT url, title, text_hash, language, text_source, duplicate_of, duplicate_kind, story_id"
            " FROM articles ORDER BY url"
        ).fetchall()
        # Everyday (lead) vectors and the whole-article ones the verdicts needed, by (text hash, model key).
        vectors = {(text_hash, model): vector for text_hash, model, vector in
                   connection.execute("SELECT text_hash, model, vector FROM embeddings").fetchall()}
        pages = connection.execute("SELECT article_id, final_url FROM pages ORDER BY 1").fetchall()
    finally:
        connection.close()
    return articles, vectors, pages


def test_dask_runner_stores_what_the_default_runner_stores(tmp_path, seed_site, prefect_server):
    results = {}
    for runner in ("local", "dask"):
        db = tmp_path / f"{runner}.duckdb"
        with open_warehouse(db) as connection:
            add_feed(connection, seed_site.url("/feed.xml"), "Local", datetime.now(UTC))
        settings = Settings(
            allow_private_networks=True, fetch_host_delay=0, task_runner=runner, dask_workers=2, dask_chunk_size=2,
            embed_threads=1,
        )
        summary = ingest_feeds(db, settings)
        assert (summary.new_articles, summary.duplicates) == (4, 1), runner
        results[runner] = stored(db)
    (local_articles, local_vectors, local_pages), (dask_articles, dask_vectors, dask_pages) = results["local"], results["dask"]
    assert dask_articles == local_articles
    assert dask_pages == local_pages
    assert dask_vectors.keys() == local_vectors.keys()
    for key, vector in local_vectors.items():
        assert np.allclose(vector, dask_vectors[key], atol=1e-5), key
