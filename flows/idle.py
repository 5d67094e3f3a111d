"""Runs with nothing new: finished without a Prefect flow, its temporary server or the embedding model.

`newswatch run` runs a Prefect flow, which outside `serve` starts a temporary Prefect server, and
loads the embedding model: seconds that a run with nothing to ingest does not need. Such a run is
recognised here from the database alone, before either starts:

- `--fixtures DIR`: every file of the folder is stored already (by its URL, as the flow decides
  it; a file that is not, even one the flow would skip, takes the flow);
- feeds: no feed is due, or every due feed answers its conditional GET with 304 Not Modified.
  When one does not, the flow runs and its poll takes the answers received here rather than
  asking those feeds again.

It then does what the flow does after its batches, outside Prefect: records the feeds' answers,
delivers the alerts that are due, brings the full-text index up to date, and leaves a completed
`runs` row under the run lock.
"""

import asyncio

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from extract.fixtures import fixture_files
from flows.alerts import deliver_due_alerts
from flows.runs import RunSummary, finish_run, recorded_run
from flows.search import sync_search_index
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.feeds import FeedOutcome, due_feeds
from warehouse.load import LoadBatch, load_batch
from warehouse.lookups import stored_urls

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdleRun:
    """A run found to have nothing new: its flow's name, what it counted and why it is idle."""

    flow_name: str
    read: int
    reason: str
    feed_outcomes: list[FeedOutcome] = field(default_factory=list)  # the due feeds' 304s, to record


def idle_fixture_run(directory: Path, settings: Settings) -> IdleRun | None:
    """An `IdleRun` when every file of the folder is stored already; None when the flow has work to do.

    The folder's files are listed, not read: a file is stored when its URL (`file://` and its
    resolved path, as `extract.fixtures` names articles) is.
    """
    directory = Path(directory).resolve()
    paths = fixture_files(directory)
    if not paths or not settings.db.exists():
        return None
    urls = []
    for path in paths:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            return None  # the flow reports the file
        if not resolved.is_relative_to(directory):
            return None
        urls.append(resolved.as_uri())
    with open_warehouse(settings.db, read_only=True, memory_limit=settings.duckdb_memory_limit) as connection:
        if len(stored_urls(connection, urls)) < len(set(urls)):
            return None
    return IdleRun("ingest-fixtures", len(paths), f"all {len(paths)} files already stored")


def idle_feed_run(settings: Settings, now: datetime | None = None) -> IdleRun | None:
    """An `IdleRun` when no feed is due, or every due feed answers 304; None when the flow has work to do.

    The due feeds are asked as a poll asks them (conditional GET, the run's fetch settings). When
    one has changed or fails, their answers are kept for the flow's poll in this process.
    """
    if not settings.db.exists():
        return None
    with open_warehouse(settings.db, read_only=True, memory_limit=settings.duckdb_memory_limit) as connection:
        feeds = due_feeds(connection, now or datetime.now(UTC))
    if not feeds:
        return IdleRun("ingest-feeds", 0, "no feed due")
    from flows.polling import ask_feeds, fetch_policy, keep_feed_answers  # extraction's imports: only when asked

    responses = asyncio.run(ask_feeds(feeds, fetch_policy(settings)))
    if not all(response.not_modified for response in responses):
        keep_feed_answers(feeds, responses)
        return None
    answered_at = datetime.now(UTC)
    next_due = answered_at + timedelta(minutes=settings.poll_interval_minutes)
    outcomes = [
        FeedOutcome(feed.feed_id, answered_at, response.status, None, response.etag, response.last_modified, next_due, 0)
        for feed, response in zip(feeds, responses)
    ]
    return IdleRun("ingest-feeds", 0, f"all {len(feeds)} due feeds unchanged (304)", outcomes)


def finish_idle_run(idle: IdleRun, settings: Settings) -> RunSummary:
    """Deliver the due alerts, update the search index and record the run, as the flow does after its batches."""

    def work() -> RunSummary:
        if idle.feed_outcomes:  # as a poll records them: next due after the interval, validators kept
            with open_warehouse(settings.db, memory_limit=settings.duckdb_memory_limit) as connection:
                load_batch(connection, LoadBatch(feed_outcomes=idle.feed_outcomes))
        delivered, failed = finish_run(
            lambda: deliver_due_alerts(settings.db, settings), lambda: sync_search_index(settings.db, settings), logger,
        )
        fixtures = idle.flow_name == "ingest-fixtures"
        return RunSummary(
            read=idle.read, already_stored=idle.read if fixtures else 0,
            feeds_polled=len(idle.feed_outcomes), not_modified=len(idle.feed_outcomes),
            delivered=delivered, delivery_failures=failed, message=f"nothing new: {idle.reason}",
        )

    return recorded_run(idle.flow_name, settings.db, work, settings)
