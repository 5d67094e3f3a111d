"""Numbered, forward-only schema migrations, each applied in a transaction and recorded.

Never edit a migration that has shipped: add a new one.
"""

import logging
from dataclasses import dataclass

import duckdb

from warehouse.sql import execute, transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step."""

    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "articles, embeddings, terms and the stories view",
        """
        CREATE TABLE articles (
            article_id           VARCHAR PRIMARY KEY,
            url                  VARCHAR NOT NULL UNIQUE,
            canonical_url        VARCHAR NOT NULL,
            title                VARCHAR,
            published_at         TIMESTAMPTZ,
            ingested_at          TIMESTAMPTZ NOT NULL,
            text                 VARCHAR NOT NULL,
            text_hash            VARCHAR NOT NULL,
            author               VARCHAR,
            language             VARCHAR,
            site_name            VARCHAR,
            source               VARCHAR NOT NULL,
            duplicate_of         VARCHAR,
            duplicate_kind       VARCHAR,
            duplicate_similarity DOUBLE,
            story_id             VARCHAR NOT NULL,
            story_similarity     DOUBLE
        );
        CREATE TABLE embeddings (
            text_hash   VARCHAR NOT NULL,
            model       VARCHAR NOT NULL,
            vector      FLOAT[] NOT NULL,
            chunk_count INTEGER NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (text_hash, model)
        );
        CREATE TABLE article_terms (
            article_id VARCHAR NOT NULL,
            term       VARCHAR NOT NULL,
            count      INTEGER NOT NULL,
            PRIMARY KEY (article_id, term)
        );
        CREATE TABLE terms (
            term           VARCHAR PRIMARY KEY,
            document_count INTEGER NOT NULL
        );
        CREATE VIEW stories AS
        SELECT
            story_id,
            first(title ORDER BY duplicate_of IS NOT NULL, coalesce(published_at, ingested_at), url) AS headline,
            count(*) AS article_count,
            count(*) FILTER (WHERE duplicate_of IS NULL) AS original_count,
            count(*) FILTER (WHERE duplicate_of IS NOT NULL) AS duplicate_count,
            min(published_at) AS first_published_at,
            max(published_at) AS last_published_at,
            min(ingested_at) AS first_ingested_at,
            max(ingested_at) AS last_ingested_at
        FROM articles
        GROUP BY story_id;
        """,
    ),
    Migration(
        2,
        "feeds, fetch failures, raw pages and article provenance",
        """
        CREATE TABLE feeds (
            feed_id              VARCHAR PRIMARY KEY,
            url                  VARCHAR NOT NULL UNIQUE,
            name                 VARCHAR,
            added_at             TIMESTAMPTZ NOT NULL,
            etag                 VARCHAR,
            last_modified        VARCHAR,
            last_status          INTEGER,
            last_error           VARCHAR,
            last_fetched_at      TIMESTAMPTZ,
            last_success_at      TIMESTAMPTZ,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_due_at          TIMESTAMPTZ,
            last_new_item_at     TIMESTAMPTZ
        );
        CREATE TABLE fetch_failures (
            url       VARCHAR NOT NULL,
            feed_id   VARCHAR,
            status    INTEGER,
            error     VARCHAR NOT NULL,
            failed_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE pages (
            article_id   VARCHAR PRIMARY KEY,
            final_url    VARCHAR NOT NULL,
            content_type VARCHAR,
            html_zlib    BLOB NOT NULL,
            fetched_at   TIMESTAMPTZ NOT NULL
        );
        ALTER TABLE articles ADD COLUMN feed_id VARCHAR;
        ALTER TABLE articles ADD COLUMN text_source VARCHAR;
        """,
    ),
    Migration(
        3,
        "run history, article images and the extractor that produced each text",
        """
        CREATE TABLE runs (
            run_id        VARCHAR PRIMARY KEY,
            flow          VARCHAR NOT NULL,
            started_at    TIMESTAMPTZ NOT NULL,
            finished_at   TIMESTAMPTZ,
            status        VARCHAR NOT NULL,
            feeds_polled  INTEGER NOT NULL DEFAULT 0,
            not_modified  INTEGER NOT NULL DEFAULT 0,
            new_articles  INTEGER NOT NULL DEFAULT 0,
            duplicates    INTEGER NOT NULL DEFAULT 0,
            new_stories   INTEGER NOT NULL DEFAULT 0,
            errors        INTEGER NOT NULL DEFAULT 0,
            message       VARCHAR
        );
        ALTER TABLE articles ADD COLUMN image_url VARCHAR;
        ALTER TABLE articles ADD COLUMN extracted_with VARCHAR;
        """,
    ),
    Migration(
        4,
        "OpenVINO fp32 vectors share PyTorch's model key (they are the same vectors)",
        """
        INSERT INTO embeddings (text_hash, model, vector, chunk_count, created_at)
        SELECT text_hash, left(model, length(model) - length('+openvino')), vector, chunk_count, created_at
        FROM embeddings AS fp32
        WHERE model LIKE '%+openvino'
          AND NOT EXISTS (
            SELECT 1 FROM embeddings AS base
            WHERE base.text_hash = fp32.text_hash AND base.model = left(fp32.model, length(fp32.model) - length('+openvino'))
          );
        DELETE FROM embeddings WHERE model LIKE '%+openvino';
        """,
    ),
    Migration(
        5,
        "watches, the stories they matched, alerts and their deliveries",
        """
        CREATE SEQUENCE watch_ids START 1;
        CREATE TABLE watches (
            watch_id     INTEGER PRIMARY KEY DEFAULT nextval('watch_ids'),
            name         VARCHAR NOT NULL UNIQUE,
            query        VARCHAR,
            like_text    VARCHAR,
            like_vector  FLOAT[],
            like_model   VARCHAR,
            min_articles INTEGER NOT NULL,
            min_sources  INTEGER NOT NULL,
            notify_urls  VARCHAR[] NOT NULL,
            created_at   TIMESTAMPTZ NOT NULL,
            CHECK ((query IS NULL) <> (like_text IS NULL))
        );
        CREATE TABLE watch_matches (
            watch_id         INTEGER NOT NULL,
            story_id         VARCHAR NOT NULL,
            first_matched_at TIMESTAMPTZ NOT NULL,
            last_matched_at  TIMESTAMPTZ NOT NULL,
            matched_articles INTEGER NOT NULL,
            PRIMARY KEY (watch_id, story_id)
        );
        CREATE TABLE alerts (
            alert_id      VARCHAR PRIMARY KEY,
            watch_id      INTEGER NOT NULL,
            story_id      VARCHAR NOT NULL,
            kind          VARCHAR NOT NULL,
            article_count INTEGER NOT NULL,
            source_count  INTEGER NOT NULL,
            created_at    TIMESTAMPTZ NOT NULL,
            payload       VARCHAR NOT NULL
        );
        CREATE TABLE alert_deliveries (
            alert_id        VARCHAR NOT NULL,
            url             VARCHAR NOT NULL,
            status          VARCHAR NOT NULL,
            attempts        INTEGER NOT NULL,
            last_attempt_at TIMESTAMPTZ,
            next_attempt_at TIMESTAMPTZ,
            delivered_at    TIMESTAMPTZ,
            last_error      VARCHAR,
            PRIMARY KEY (alert_id, url)
        );
        """,
    ),
)


def schema_version(connection: duckdb.DuckDBPyConnection) -> int:
    """The highest applied migration, 0 for an empty database."""
    exists = execute(connection, 
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    )[0][0]
    if not exists:
        return 0
    return execute(connection, "SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]


def apply_migrations(connection: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration newer than the database, each in its own transaction.

    Returns:
        The versions applied now.
    """
    execute(connection, 
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    current = schema_version(connection)
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        with transaction(connection):
            execute(connection, migration.sql)
            execute(connection, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [migration.version, migration.name])
        logger.info("applied migration %d: %s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
