"""Migrations build the documented schema on an empty database and are recorded."""

import duckdb
import pytest

from warehouse.connection import WarehouseError, open_warehouse
from warehouse.migrations import MIGRATIONS, apply_migrations

EXPECTED = {
    "articles": [
        ("article_id", "VARCHAR"), ("url", "VARCHAR"), ("canonical_url", "VARCHAR"), ("title", "VARCHAR"),
        ("published_at", "TIMESTAMP WITH TIME ZONE"), ("ingested_at", "TIMESTAMP WITH TIME ZONE"),
        ("text", "VARCHAR"), ("text_hash", "VARCHAR"), ("author", "VARCHAR"), ("language", "VARCHAR"),
        ("site_name", "VARCHAR"), ("source", "VARCHAR"), ("duplicate_of", "VARCHAR"), ("duplicate_kind", "VARCHAR"),
        ("duplicate_similarity", "DOUBLE"), ("story_id", "VARCHAR"), ("story_similarity", "DOUBLE"),
        ("feed_id", "VARCHAR"), ("text_source", "VARCHAR"), ("image_url", "VARCHAR"), ("extracted_with", "VARCHAR"),
    ],
    "runs": [
        ("run_id", "VARCHAR"), ("flow", "VARCHAR"), ("started_at", "TIMESTAMP WITH TIME ZONE"),
        ("finished_at", "TIMESTAMP WITH TIME ZONE"), ("status", "VARCHAR"), ("feeds_polled", "INTEGER"),
        ("not_modified", "INTEGER"), ("new_articles", "INTEGER"), ("duplicates", "INTEGER"), ("new_stories", "INTEGER"),
        ("errors", "INTEGER"), ("message", "VARCHAR"),
    ],
    "feeds": [
        ("feed_id", "VARCHAR"), ("url", "VARCHAR"), ("name", "VARCHAR"), ("added_at", "TIMESTAMP WITH TIME ZONE"),
        ("etag", "VARCHAR"), ("last_modified", "VARCHAR"), ("last_status", "INTEGER"), ("last_error", "VARCHAR"),
        ("last_fetched_at", "TIMESTAMP WITH TIME ZONE"), ("last_success_at", "TIMESTAMP WITH TIME ZONE"),
        ("consecutive_failures", "INTEGER"), ("next_due_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_new_item_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "fetch_failures": [
        ("url", "VARCHAR"), ("feed_id", "VARCHAR"), ("status", "INTEGER"), ("error", "VARCHAR"),
        ("failed_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "pages": [
        ("article_id", "VARCHAR"), ("final_url", "VARCHAR"), ("content_type", "VARCHAR"), ("html_zlib", "BLOB"),
        ("fetched_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "embeddings": [
        ("text_hash", "VARCHAR"), ("model", "VARCHAR"), ("vector", "FLOAT[]"), ("chunk_count", "INTEGER"),
        ("created_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "article_terms": [("article_id", "VARCHAR"), ("term", "VARCHAR"), ("count", "INTEGER")],
    "terms": [("term", "VARCHAR"), ("document_count", "INTEGER")],
    "watches": [
        ("watch_id", "INTEGER"), ("name", "VARCHAR"), ("query", "VARCHAR"), ("like_text", "VARCHAR"),
        ("like_vector", "FLOAT[]"), ("like_model", "VARCHAR"), ("min_articles", "INTEGER"), ("min_sources", "INTEGER"),
        ("notify_urls", "VARCHAR[]"), ("created_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "watch_matches": [
        ("watch_id", "INTEGER"), ("story_id", "VARCHAR"), ("first_matched_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_matched_at", "TIMESTAMP WITH TIME ZONE"), ("matched_articles", "INTEGER"),
    ],
    "alerts": [
        ("alert_id", "VARCHAR"), ("watch_id", "INTEGER"), ("story_id", "VARCHAR"), ("kind", "VARCHAR"),
        ("article_count", "INTEGER"), ("source_count", "INTEGER"), ("created_at", "TIMESTAMP WITH TIME ZONE"),
        ("payload", "VARCHAR"),
    ],
    "alert_deliveries": [
        ("alert_id", "VARCHAR"), ("url", "VARCHAR"), ("status", "VARCHAR"), ("attempts", "INTEGER"),
        ("last_attempt_at", "TIMESTAMP WITH TIME ZONE"), ("next_attempt_at", "TIMESTAMP WITH TIME ZONE"),
        ("delivered_at", "TIMESTAMP WITH TIME ZONE"), ("last_error", "VARCHAR"),
    ],
    "schema_migrations": [("version", "INTEGER"), ("name", "VARCHAR"), ("applied_at", "TIMESTAMP WITH TIME ZONE")],
    "stories": [
        ("story_id", "VARCHAR"), ("headline", "VARCHAR"), ("article_count", "BIGINT"), ("original_count", "BIGINT"),
        ("duplicate_count", "BIGINT"), ("first_published_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_published_at", "TIMESTAMP WITH TIME ZONE"), ("first_ingested_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_ingested_at", "TIMESTAMP WITH TIME ZONE"),
    ],
}


def schema(connection):
    rows = connection.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY table_name, ordinal_position"
    ).fetchall()
    result = {}
    for table, column, kind in rows:
        result.setdefault(table, []).append((column, kind))
    return result


def test_all_migrations_on_an_empty_database(tmp_path):
    with open_warehouse(tmp_path / "a.duckdb") as connection:
        assert schema(connection) == EXPECTED
        recorded = connection.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert recorded == [(m.version, m.name) for m in MIGRATIONS]
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_migrations_apply_once(tmp_path):
    connection = duckdb.connect(str(tmp_path / "b.duckdb"))
    assert apply_migrations(connection) == [m.version for m in MIGRATIONS]
    assert apply_migrations(connection) == []
    connection.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "c.duckdb"
    with open_warehouse(path) as connection:
        connection.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')").fetchall()
    with pytest.raises(WarehouseError, match="newer"):
        with open_warehouse(path):
            pass


def database_at_version(path, version: int) -> duckdb.DuckDBPyConnection:
    """A database as the first `version` migrations left it, open for writing more."""
    connection = duckdb.connect(str(path))
    connection.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ).fetchall()
    for migration in MIGRATIONS[:version]:
        connection.execute(migration.sql).fetchall()
        connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [migration.version, migration.name]
        ).fetchall()
    return connection


def test_upgrade_from_version_1_keeps_the_data(tmp_path):
    path = tmp_path / "e.duckdb"
    connection = database_at_version(path, 1)
    connection.execute(
        "INSERT INTO articles (article_id, url, canonical_url, ingested_at, text, text_hash, source, story_id)"
        " VALUES ('a', 'file:///a', 'file:///a', now(), 'text', 'h', 'fixtures', 'a')"
    ).fetchall()
    connection.close()
    with open_warehouse(path) as connection:
        assert connection.execute("SELECT article_id, feed_id FROM articles").fetchall() == [("a", None)]
        assert schema(connection) == EXPECTED


def test_openvino_fp32_vectors_move_to_the_shared_key(tmp_path):
    path = tmp_path / "v.duckdb"
    connection = database_at_version(path, 3)
    rows = [
        ("only-openvino", "m@128+openvino", [1.0, 0.0]),
        ("both", "m@128", [0.0, 1.0]),
        ("both", "m@128+openvino", [0.0, 0.99]),
        ("int8", "m@128+openvino-int8", [0.5, 0.5]),
    ]
    for text_hash, model, vector in rows:
        connection.execute(
            "INSERT INTO embeddings VALUES (?, ?, ?, 1, now())", [text_hash, model, vector]
        ).fetchall()
    connection.close()
    with open_warehouse(path) as connection:
        stored = connection.execute("SELECT text_hash, model, vector FROM embeddings ORDER BY ALL").fetchall()
    assert stored == [
        ("both", "m@128", [0.0, 1.0]),  # the one already under the shared key stays
        ("int8", "m@128+openvino-int8", [0.5, 0.5]),  # int8 vectors differ: their own key
        ("only-openvino", "m@128", [1.0, 0.0]),
    ]


def test_read_only_needs_a_current_schema(tmp_path):
    path = tmp_path / "d.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(WarehouseError, match="schema version 0"):
        with open_warehouse(path, read_only=True):
            pass
