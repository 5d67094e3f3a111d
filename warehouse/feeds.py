"""The feed list and each feed's health: conditional-GET validators, failures, next due time."""

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import duckdb

from warehouse.sql import execute


@dataclass(frozen=True)
class FeedRecord:
    """One row of the `feeds` table."""

    feed_id: str
    url: str
    name: str | None
    added_at: datetime
    etag: str | None
    last_modified: str | None
    last_status: int | None
    last_error: str | None
    last_fetched_at: datetime | None
    last_success_at: datetime | None
    consecutive_failures: int
    next_due_at: datetime | None
    last_new_item_at: datetime | None


_COLUMNS = ", ".join(field.name for field in fields(FeedRecord))


def feed_id_for(url: str) -> str:
    """Stable key of a feed: a hash of its URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def add_feed(connection: duckdb.DuckDBPyConnection, url: str, name: str | None, now: datetime) -> bool:
    """Add a feed, due at once; False when the URL is already listed (its name is then updated if given)."""
    existing = execute(connection, "SELECT feed_id FROM feeds WHERE url = ?", [url])
    if existing:
        if name:
            execute(connection, "UPDATE feeds SET name = ? WHERE url = ?", [name, url])
        return False
    execute(
        connection,
        "INSERT INTO feeds (feed_id, url, name, added_at, next_due_at) VALUES (?, ?, ?, ?, ?)",
        [feed_id_for(url), url, name, now, now],
    )
    return True


def remove_feed(connection: duckdb.DuckDBPyConnection, url_or_id: str) -> bool:
    """Remove a feed by URL or id; its articles stay. False when no such feed."""
    removed = execute(connection, "DELETE FROM feeds WHERE url = ? OR feed_id = ? RETURNING feed_id", [url_or_id, url_or_id])
    return bool(removed)


def list_feeds(connection: duckdb.DuckDBPyConnection) -> list[FeedRecord]:
    """Every feed, by name then URL."""
    rows = execute(connection, f"SELECT {_COLUMNS} FROM feeds ORDER BY coalesce(name, url), url")
    return [FeedRecord(*row) for row in rows]


def due_feeds(connection: duckdb.DuckDBPyConnection, now: datetime) -> list[FeedRecord]:
    """Feeds whose next poll time has come (failing feeds included: they are retried forever)."""
    rows = execute(
        connection,
        f"SELECT {_COLUMNS} FROM feeds WHERE next_due_at IS NULL OR next_due_at <= ? ORDER BY next_due_at NULLS FIRST, url",
        [now],
    )
    return [FeedRecord(*row) for row in rows]


@dataclass(frozen=True)
class FeedOutcome:
    """What one poll of a feed gave, to be recorded."""

    feed_id: str
    fetched_at: datetime
    status: int | None
    error: str | None
    etag: str | None
    last_modified: str | None
    next_due_at: datetime
    new_items: int


def record_feed_outcomes(connection: duckdb.DuckDBPyConnection, outcomes: list[FeedOutcome]) -> None:
    """Update each polled feed's health; validators are kept when a poll brings none."""
    for outcome in outcomes:
        failed = outcome.error is not None
        execute(
            connection,
            """
            UPDATE feeds SET
                last_status = ?, last_error = ?, last_fetched_at = ?,
                last_success_at = CASE WHEN ? THEN last_success_at ELSE ? END,
                consecutive_failures = CASE WHEN ? THEN consecutive_failures + 1 ELSE 0 END,
                etag = coalesce(?, etag), last_modified = coalesce(?, last_modified),
                next_due_at = ?,
                last_new_item_at = CASE WHEN ? > 0 THEN ? ELSE last_new_item_at END
            WHERE feed_id = ?
            """,
            [
                outcome.status, outcome.error, outcome.fetched_at,
                failed, outcome.fetched_at,
                failed,
                None if failed else outcome.etag, None if failed else outcome.last_modified,
                outcome.next_due_at,
                outcome.new_items, outcome.fetched_at,
                outcome.feed_id,
            ],
        )


@dataclass(frozen=True)
class FetchFailure:
    """One failed fetch of a feed or an article page."""

    url: str
    feed_id: str | None
    status: int | None
    error: str
    failed_at: datetime


def record_fetch_failures(connection: duckdb.DuckDBPyConnection, failures: list[FetchFailure]) -> None:
    """Append failures to `fetch_failures` (a row per failure, never only a log line)."""
    for failure in failures:
        execute(
            connection,
            "INSERT INTO fetch_failures (url, feed_id, status, error, failed_at) VALUES (?, ?, ?, ?, ?)",
            [failure.url, failure.feed_id, failure.status, failure.error, failure.failed_at],
        )


def attention_reasons(feed: FeedRecord, now: datetime, silent_after: timedelta) -> list[str]:
    """Why a feed needs a look: it is failing, or it answers but has brought nothing new for long."""
    reasons = []
    if feed.consecutive_failures:
        reasons.append(f"failing ×{feed.consecutive_failures}: {feed.last_error or 'error'}")
    reference = feed.last_new_item_at or feed.added_at
    if feed.last_success_at and now - reference > silent_after:
        reasons.append(f"silent since {reference:%Y-%m-%d}")
    return reasons
