"""Runs: one `runs` row per ingest or maintenance run, keyed by `run_id`."""

from dataclasses import asdict, dataclass, fields
from datetime import datetime

import duckdb

from warehouse.sql import execute


@dataclass
class RunRecord:
    """One row of the `runs` table; status is "running", "completed", "failed" or "cancelled"."""

    run_id: str
    flow: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    feeds_polled: int = 0
    not_modified: int = 0
    new_articles: int = 0
    duplicates: int = 0
    new_stories: int = 0
    errors: int = 0
    message: str | None = None


_COLUMNS = [field.name for field in fields(RunRecord)]


def record_run(connection: duckdb.DuckDBPyConnection, record: RunRecord) -> None:
    """Insert a run, or update it in place when its id is already there."""
    placeholders = ", ".join("?" for _ in _COLUMNS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS if name != "run_id")
    execute(
        connection,
        f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders}) ON CONFLICT (run_id) DO UPDATE SET {updates}",
        list(asdict(record).values()),
    )


def recent_runs(connection: duckdb.DuckDBPyConnection, limit: int = 20) -> list[RunRecord]:
    """The latest runs, newest first."""
    rows = execute(connection, f"SELECT {', '.join(_COLUMNS)} FROM runs ORDER BY started_at DESC LIMIT ?", [limit])
    return [RunRecord(*row) for row in rows]


def abandon_unfinished_runs(connection: duckdb.DuckDBPyConnection, now: datetime) -> int:
    """Mark runs left "running" as "abandoned" (call while holding the run lock: none can be live)."""
    count = execute(connection, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0]
    if count:
        execute(
            connection,
            "UPDATE runs SET status = 'abandoned', finished_at = ?,"
            " message = coalesce(message, 'the process stopped before the run finished') WHERE status = 'running'",
            [now],
        )
    return count


def last_completed_run(connection: duckdb.DuckDBPyConnection, flow: str) -> RunRecord | None:
    """The latest completed run of a flow."""
    rows = execute(
        connection,
        f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE flow = ? AND status = 'completed' ORDER BY started_at DESC LIMIT 1",
        [flow],
    )
    return RunRecord(*rows[0]) if rows else None
