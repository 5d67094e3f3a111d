"""Watches (saved queries that alert), the stories they matched, their alerts and each alert's deliveries.

Keys, in one place:

- ``watches``: ``watch_id`` (from a sequence; a removed watch's id is never reused), ``name`` unique.
- ``watch_matches``: ``(watch_id, story_id)``: a story matched once stays matched.
- ``alerts``: ``alert_id``, a hash of (watch, story, kind, and for a developing story the UTC
  day; `monitoring.policy.alert_id_for`): the same alert can never be stored twice, so a rerun, a
  restart or a run killed at any point does not alert the same thing again. Alerts are decided
  (`monitoring.policy`) and stored (`store_alerts`) in the transaction that loads the batch that
  made them (`flows.alerts.record_alerts`), so none is lost either.
- ``alert_deliveries``: ``(alert_id, url)``, one row per notification URL, `pending` until
  delivered, retried with backoff, then `failed`.

The notification URLs are stored as given (they are needed to deliver); whatever shows them
masks them first (`monitoring.notification_urls.mask_url`).
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from warehouse.sql import execute


@dataclass(frozen=True)
class WatchRecord:
    """One row of the `watches` table."""

    watch_id: int
    name: str
    query: str | None
    like_text: str | None
    like_vector: np.ndarray | None
    like_model: str | None
    min_articles: int
    min_sources: int
    notify_urls: list[str]
    created_at: datetime


_WATCH_COLUMNS = "watch_id, name, query, like_text, like_vector, like_model, min_articles, min_sources, notify_urls, created_at"


def _watch(row) -> WatchRecord:
    values = list(row)
    values[4] = None if values[4] is None else np.asarray(values[4], dtype=np.float32)
    values[8] = list(values[8] or [])
    return WatchRecord(*values)


def add_watch(
    connection: duckdb.DuckDBPyConnection,
    name: str,
    *,
    query: str | None,
    like_text: str | None,
    like_vector: np.ndarray | None,
    like_model: str | None,
    min_articles: int,
    min_sources: int,
    notify_urls: list[str],
    now: datetime,
) -> int | None:
    """Store a new watch; its id, or None when a watch of that name exists (nothing is changed then)."""
    if execute(connection, "SELECT 1 FROM watches WHERE name = ?", [name]):
        return None
    vector = None if like_vector is None else np.asarray(like_vector, dtype=np.float32).tolist()
    (watch_id,), = execute(
        connection,
        """
        INSERT INTO watches (name, query, like_text, like_vector, like_model, min_articles, min_sources, notify_urls, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING watch_id
        """,
        [name, query, like_text, vector, like_model, min_articles, min_sources, notify_urls, now],
    )
    return int(watch_id)


def find_watch(connection: duckdb.DuckDBPyConnection, name_or_id: str) -> WatchRecord | None:
    """The watch of this name, else of this id."""
    rows = execute(connection, f"SELECT {_WATCH_COLUMNS} FROM watches WHERE name = ?", [name_or_id])
    if not rows and name_or_id.strip().isdigit():
        rows = execute(connection, f"SELECT {_WATCH_COLUMNS} FROM watches WHERE watch_id = ?", [int(name_or_id)])
    return _watch(rows[0]) if rows else None


def remove_watch(connection: duckdb.DuckDBPyConnection, watch_id: int) -> None:
    """Delete a watch with its matches, alerts and deliveries (inside the caller's transaction)."""
    execute(
        connection,
        "DELETE FROM alert_deliveries WHERE alert_id IN (SELECT alert_id FROM alerts WHERE watch_id = ?)",
        [watch_id],
    )
    for table in ("alerts", "watch_matches", "watches"):
        execute(connection, f"DELETE FROM {table} WHERE watch_id = ?", [watch_id])


def list_watches(connection: duckdb.DuckDBPyConnection) -> list[WatchRecord]:
    """Every watch, oldest first."""
    return [_watch(row) for row in execute(connection, f"SELECT {_WATCH_COLUMNS} FROM watches ORDER BY watch_id")]


@dataclass(frozen=True)
class WatchOverview:
    """A watch with its last match and the health of its deliveries."""

    watch: WatchRecord
    matched_stories: int
    last_matched_at: datetime | None
    last_story_id: str | None
    last_headline: str | None
    alerts: int
    delivered: int
    pending: int
    failed: int
    last_error: str | None
    last_error_at: datetime | None


def watch_overviews(connection: duckdb.DuckDBPyConnection) -> list[WatchOverview]:
    """Every watch with its matches, alerts and delivery counts, oldest watch first."""
    watches = list_watches(connection)
    matches = {
        watch_id: (count, at, story_id, headline)
        for watch_id, count, at, story_id, headline in execute(
            connection,
            """
            SELECT m.watch_id, count(*), max(m.last_matched_at),
                   arg_max(m.story_id, m.last_matched_at), arg_max(s.headline, m.last_matched_at)
            FROM watch_matches m LEFT JOIN stories s USING (story_id) GROUP BY m.watch_id
            """,
        )
    }
    deliveries = {
        watch_id: row
        for watch_id, *row in execute(
            connection,
            """
            SELECT a.watch_id, count(DISTINCT a.alert_id),
                   count(d.url) FILTER (WHERE d.status = 'delivered'),
                   count(d.url) FILTER (WHERE d.status = 'pending'),
                   count(d.url) FILTER (WHERE d.status = 'failed'),
                   arg_max(d.last_error, d.last_attempt_at) FILTER (WHERE d.last_error IS NOT NULL AND d.status <> 'delivered'),
                   max(d.last_attempt_at) FILTER (WHERE d.last_error IS NOT NULL AND d.status <> 'delivered')
            FROM alerts a LEFT JOIN alert_deliveries d USING (alert_id) GROUP BY a.watch_id
            """,
        )
    }
    return [
        WatchOverview(watch, *matches.get(watch.watch_id, (0, None, None, None)),
                      *deliveries.get(watch.watch_id, (0, 0, 0, 0, None, None)))
        for watch in watches
    ]


@dataclass(frozen=True)
class ArticleMatch:
    """A new article that a watch matched, and the story it was placed in."""

    watch_id: int
    article_id: str
    story_id: str


def record_matches(connection: duckdb.DuckDBPyConnection, matches: list[ArticleMatch], now: datetime) -> None:
    """Store a batch's matches (inside the transaction that loads the batch), one statement for all.

    A story matched once stays matched; each match adds to its `matched_articles`. A watch removed
    since the batch was matched (by `remove-watch`, meanwhile) keeps no matches.
    """
    counts: dict[tuple[int, str], int] = {}
    for match in matches:
        counts[(match.watch_id, match.story_id)] = counts.get((match.watch_id, match.story_id), 0) + 1
    if counts:
        existing = {watch_id for (watch_id,) in execute(
            connection, "SELECT watch_id FROM watches WHERE watch_id IN (SELECT unnest(?::INTEGER[]))",
            [sorted({watch_id for watch_id, _ in counts})],
        )}
        counts = {key: count for key, count in counts.items() if key[0] in existing}
    if not counts:
        return
    connection.register("batch_matches", pa.Table.from_pylist(
        [{"watch_id": watch_id, "story_id": story_id, "matched_articles": count}
         for (watch_id, story_id), count in counts.items()],
        schema=pa.schema([("watch_id", pa.int32()), ("story_id", pa.string()), ("matched_articles", pa.int32())]),
    ))
    execute(
        connection,
        """
        INSERT INTO watch_matches (watch_id, story_id, first_matched_at, last_matched_at, matched_articles)
        SELECT watch_id, story_id, ?, ?, matched_articles FROM batch_matches
        ON CONFLICT (watch_id, story_id) DO UPDATE SET
            last_matched_at = excluded.last_matched_at,
            matched_articles = watch_matches.matched_articles + excluded.matched_articles
        """,
        [now, now],
    )
    connection.unregister("batch_matches")


MATCHED_STORY_COLUMNS = ("watch_id", "story_id", "min_articles", "min_sources", "last_kind", "last_article_count",
                         "developing_days")


def matched_stories(connection: duckdb.DuckDBPyConnection, story_ids: list[str]) -> list[dict]:
    """Every (watch, story) match among these stories, with the watch's thresholds and its alerts on the story so far.

    Returns:
        Dicts with the keys of `MATCHED_STORY_COLUMNS`, by watch then story: `last_kind` and
        `last_article_count` are those of the watch's latest alert on the story (None when it never
        alerted on it), `developing_days` the UTC days of its "developing" alerts on it (a frozenset).
    """
    rows = execute(
        connection,
        """
        SELECT w.watch_id, m.story_id, w.min_articles, w.min_sources, last.kind, last.article_count, last.developing_days
        FROM watch_matches m JOIN watches w USING (watch_id)
        LEFT JOIN (
            SELECT watch_id, story_id, arg_max(kind, created_at) AS kind, arg_max(article_count, created_at) AS article_count,
                   list(DISTINCT timezone('UTC', created_at)::DATE) FILTER (WHERE kind = 'developing') AS developing_days
            FROM alerts GROUP BY watch_id, story_id
        ) last ON last.watch_id = m.watch_id AND last.story_id = m.story_id
        WHERE m.story_id IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY w.watch_id, m.story_id
        """,
        [story_ids],
    )
    return [{**dict(zip(MATCHED_STORY_COLUMNS, row[:-1])), "developing_days": frozenset(row[-1] or ())} for row in rows]


@dataclass(frozen=True)
class NewAlert:
    """An alert decided for a batch, ready to store: its row, its payload and the URLs to deliver it to."""

    alert_id: str
    watch_id: int
    story_id: str
    kind: str
    article_count: int
    source_count: int
    payload: dict
    notify_urls: list[str]


def store_alerts(connection: duckdb.DuckDBPyConnection, alerts: list[NewAlert], now: datetime) -> list[str]:
    """Store decided alerts with one pending delivery per distinct URL (inside the batch's transaction).

    One statement per table, not per alert: a batch can set off thousands of alerts. An alert
    stored before (the same key) is skipped with its deliveries.

    Returns:
        The ids of the alerts stored now, in the order given.
    """
    if not alerts:
        return []
    connection.register("new_alerts", pa.Table.from_pylist(
        [
            {"alert_id": alert.alert_id, "watch_id": alert.watch_id, "story_id": alert.story_id, "kind": alert.kind,
             "article_count": alert.article_count, "source_count": alert.source_count, "payload": json.dumps(alert.payload)}
            for alert in alerts
        ],
        schema=pa.schema([("alert_id", pa.string()), ("watch_id", pa.int32()), ("story_id", pa.string()), ("kind", pa.string()),
                          ("article_count", pa.int32()), ("source_count", pa.int32()), ("payload", pa.string())]),
    ))
    inserted = {alert_id for (alert_id,) in execute(
        connection,
        """
        INSERT INTO alerts (alert_id, watch_id, story_id, kind, article_count, source_count, created_at, payload)
        SELECT alert_id, watch_id, story_id, kind, article_count, source_count, ?, payload FROM new_alerts
        ON CONFLICT DO NOTHING RETURNING alert_id
        """,
        [now],
    )}
    connection.unregister("new_alerts")
    deliveries = [{"alert_id": alert.alert_id, "url": url} for alert in alerts if alert.alert_id in inserted
                  for url in dict.fromkeys(alert.notify_urls)]
    if deliveries:
        connection.register("new_deliveries", pa.Table.from_pylist(
            deliveries, schema=pa.schema([("alert_id", pa.string()), ("url", pa.string())])))
        execute(
            connection,
            "INSERT INTO alert_deliveries (alert_id, url, status, attempts, next_attempt_at)"
            " SELECT alert_id, url, 'pending', 0, ? FROM new_deliveries ON CONFLICT DO NOTHING",
            [now],
        )
        connection.unregister("new_deliveries")
    return [alert.alert_id for alert in alerts if alert.alert_id in inserted]


@dataclass(frozen=True)
class DueDelivery:
    """A delivery whose next attempt is due, with its alert's payload."""

    alert_id: str
    url: str
    attempts: int
    payload: dict


def due_deliveries(connection: duckdb.DuckDBPyConnection, now: datetime, limit: int = 1000) -> list[DueDelivery]:
    """Pending deliveries due by `now`, oldest alert first."""
    rows = execute(
        connection,
        """
        SELECT d.alert_id, d.url, d.attempts, a.payload FROM alert_deliveries d JOIN alerts a USING (alert_id)
        WHERE d.status = 'pending' AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)
        ORDER BY a.created_at, d.alert_id, d.url
        LIMIT ?
        """,
        [now, limit],
    )
    return [DueDelivery(alert_id, url, attempts, json.loads(payload)) for alert_id, url, attempts, payload in rows]


@dataclass(frozen=True)
class DeliveryAttempt:
    """What one attempt at a delivery did; `error` is already masked."""

    alert_id: str
    url: str
    ok: bool
    error: str | None
    attempted_at: datetime


def retry_delay(attempts: int, first: float, cap: float) -> timedelta:
    """How long after its `attempts`-th failed attempt a delivery is tried again: doubling from `first`, capped."""
    return timedelta(seconds=min(cap, first * 2 ** max(0, attempts - 1)))


def record_delivery_attempts(
    connection: duckdb.DuckDBPyConnection, attempts: list[DeliveryAttempt], *, first_retry: float, max_retry: float,
    max_attempts: int,
) -> None:
    """Log attempts: delivered, or retried later with backoff, or failed for good after `max_attempts`."""
    for attempt in attempts:
        (tried,), = execute(connection, "SELECT attempts + 1 FROM alert_deliveries WHERE alert_id = ? AND url = ?",
                            [attempt.alert_id, attempt.url]) or [(None,)]
        if tried is None:
            continue  # its watch was removed meanwhile
        if attempt.ok:
            execute(
                connection,
                "UPDATE alert_deliveries SET status = 'delivered', attempts = ?, last_attempt_at = ?, delivered_at = ?,"
                " next_attempt_at = NULL WHERE alert_id = ? AND url = ?",
                [tried, attempt.attempted_at, attempt.attempted_at, attempt.alert_id, attempt.url],
            )
            continue
        gave_up = tried >= max_attempts
        execute(
            connection,
            "UPDATE alert_deliveries SET status = ?, attempts = ?, last_attempt_at = ?, last_error = ?, next_attempt_at = ?"
            " WHERE alert_id = ? AND url = ?",
            [
                "failed" if gave_up else "pending", tried, attempt.attempted_at, attempt.error,
                None if gave_up else attempt.attempted_at + retry_delay(tried, first_retry, max_retry),
                attempt.alert_id, attempt.url,
            ],
        )


def recent_alerts(connection: duckdb.DuckDBPyConnection, watch_id: int | None = None, limit: int = 50) -> list[dict]:
    """The latest alerts (of one watch, or of all), newest first, with their story and deliveries.

    Returns:
        Dicts with `alert_id`, `watch_id`, `watch_name`, `story_id`, `headline` (the story's now),
        `kind`, `article_count` and `source_count` (when alerted), `created_at`, and `deliveries`:
        a list of {`url`, `status`, `attempts`, `last_error`, `delivered_at`, `next_attempt_at`}.
    """
    rows = execute(
        connection,
        """
        SELECT a.alert_id, a.watch_id, w.name, a.story_id, s.headline, a.kind, a.article_count, a.source_count, a.created_at,
               list({'url': d.url, 'status': d.status, 'attempts': d.attempts, 'last_error': d.last_error,
                     'delivered_at': d.delivered_at, 'next_attempt_at': d.next_attempt_at} ORDER BY d.url)
                 FILTER (WHERE d.url IS NOT NULL)
        FROM alerts a JOIN watches w USING (watch_id) LEFT JOIN stories s ON s.story_id = a.story_id
        LEFT JOIN alert_deliveries d ON d.alert_id = a.alert_id
        WHERE ?::INTEGER IS NULL OR a.watch_id = ?::INTEGER
        GROUP BY ALL
        ORDER BY a.created_at DESC, a.alert_id
        LIMIT ?
        """,
        [watch_id, watch_id, limit],
    )
    columns = ("alert_id", "watch_id", "watch_name", "story_id", "headline", "kind", "article_count", "source_count", "created_at")
    return [{**dict(zip(columns, row[:-1])), "deliveries": row[-1] or []} for row in rows]


def delivery_health(connection: duckdb.DuckDBPyConnection) -> dict:
    """Deliveries by status, and the latest failure (its error masked when it was recorded)."""
    counts = dict(execute(connection, "SELECT status, count(*) FROM alert_deliveries GROUP BY status"))
    last = execute(
        connection,
        "SELECT url, last_error, last_attempt_at FROM alert_deliveries WHERE last_error IS NOT NULL AND status <> 'delivered'"
        " ORDER BY last_attempt_at DESC LIMIT 1",
    )
    return {
        "delivered": counts.get("delivered", 0), "pending": counts.get("pending", 0), "failed": counts.get("failed", 0),
        "last_failure": dict(zip(("url", "error", "at"), last[0])) if last else None,
    }


def matched_story_ids(connection: duckdb.DuckDBPyConnection, watch_id: int) -> list[str]:
    """The stories a watch has matched."""
    return [story_id for (story_id,) in execute(connection, "SELECT story_id FROM watch_matches WHERE watch_id = ?", [watch_id])]


def alerted_stories(connection: duckdb.DuckDBPyConnection, watch_id: int, limit: int = 50) -> list[dict]:
    """The stories a watch has alerted on, the latest alert first: one row per story, however often it alerted.

    A feed of the watch shows each story once and updates it when the story alerts again as
    developing, so the story's first alert is its `first_alerted_at` and its latest its
    `last_alerted_at` (with that alert's kind and sizes).

    Returns:
        Dicts with `story_id`, `headline` (the story's now), `article_count`, `duplicate_count` and
        `last_ingested_at` (the story's now), `alerts` (how many), `first_alerted_at`,
        `last_alerted_at`, `last_alert_id`, `last_kind`, `alerted_article_count`, `alerted_source_count`.
    """
    rows = execute(
        connection,
        """
        SELECT a.story_id, s.headline, s.article_count, s.duplicate_count, s.last_ingested_at, count(*) AS alerts,
               min(a.created_at), max(a.created_at), arg_max(a.alert_id, a.created_at), arg_max(a.kind, a.created_at),
               arg_max(a.article_count, a.created_at), arg_max(a.source_count, a.created_at)
        FROM alerts a JOIN stories s ON s.story_id = a.story_id
        WHERE a.watch_id = ?
        GROUP BY a.story_id, s.headline, s.article_count, s.duplicate_count, s.last_ingested_at
        ORDER BY max(a.created_at) DESC, a.story_id
        LIMIT ?
        """,
        [watch_id, limit],
    )
    columns = ("story_id", "headline", "article_count", "duplicate_count", "last_ingested_at", "alerts", "first_alerted_at",
               "last_alerted_at", "last_alert_id", "last_kind", "alerted_article_count", "alerted_source_count")
    return [dict(zip(columns, row)) for row in rows]
