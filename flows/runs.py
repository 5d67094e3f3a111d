"""Runs: every flow run leaves a `runs` row and a Prefect summary artifact."""

import logging
import signal
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from extract.fixtures import SkippedFile
from extract.search_index import SearchIndexBusy
from flows.processes import noting_stop_signals, run_stopped, stop_signal
from flows.settings import Settings
from warehouse.connection import open_warehouse, run_lock
from warehouse.runs import RunRecord, abandon_unfinished_runs, record_run


@dataclass
class RunSummary:
    """What one run did: its counters, added up batch by batch while it runs (the `runs` row keeps a part of them)."""

    read: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    already_stored: int = 0
    new_articles: int = 0
    duplicates: int = 0
    new_stories: int = 0
    new_embeddings: int = 0
    batches: int = 0
    feeds_polled: int = 0
    not_modified: int = 0
    failures: int = 0
    alerts: int = 0
    delivered: int = 0
    delivery_failures: int = 0
    run_id: str | None = None
    message: str | None = None


def recorded_run(flow_name: str, db: Path, work, settings: Settings) -> RunSummary:
    """Run `work` under the database's run lock with a `runs` row and a summary artifact.

    The row says "running" while it works, then "completed", "failed" or "cancelled" (interrupted,
    e.g. by SIGTERM: see `flows.processes.run_stopped`); a row a dead process left "running" is
    marked "abandoned" by the next run. Inside a flow run the row takes the flow run's id and the
    artifact is made; outside one (a run with nothing new, `flows.idle`), neither Prefect nor its
    server is needed and the row gets a local id.
    """
    run_id = _flow_run_id()
    with noting_stop_signals(), run_lock(db):
        record = RunRecord(run_id or f"local-{datetime.now(UTC):%Y%m%dT%H%M%S%f}", flow_name, datetime.now(UTC))
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            abandoned = abandon_unfinished_runs(connection, record.started_at)
            record_run(connection, record)
        if abandoned:
            _run_logger(run_id).warning("%d earlier run(s) had stopped before finishing; marked abandoned", abandoned)
        try:
            summary = work()
        except BaseException as error:
            # SIGTERM (Prefect's TerminationSignal) or Ctrl+C, or an error they caused on the way
            stopped = not isinstance(error, Exception) or stop_signal() is not None
            if stopped:
                run_stopped(error, "stopped; the batches stored before were kept")
            record.status = "cancelled" if stopped else "failed"
            record.finished_at = datetime.now(UTC)
            if stopped:
                cause = signal.Signals(stop_signal()).name if stop_signal() else type(error).__name__
                record.message = f"stopped by {cause}; the batches stored before were kept"
            else:
                record.message = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
            try:
                with open_warehouse(db, lock_wait=5, memory_limit=settings.duckdb_memory_limit) as connection:
                    record_run(connection, record)
            except Exception:  # noqa: BLE001 - the original error matters more; the next run marks it abandoned
                pass
            raise
        record.status = "completed"
        record.finished_at = datetime.now(UTC)
        record.feeds_polled, record.not_modified = summary.feeds_polled, summary.not_modified
        record.new_articles, record.duplicates = summary.new_articles, summary.duplicates
        record.new_stories, record.errors = summary.new_stories, summary.failures + len(summary.skipped)
        record.message = summary.message
        with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
            record_run(connection, record)
    if run_id:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(run_markdown(record), key=f"{flow_name}-summary", description=f"What this {flow_name} run did")
    return replace(summary, run_id=record.run_id)


def finish_run(deliver, update_search_index, log) -> tuple[int, int]:
    """What every run does last: deliver the due alerts, then bring the search index up to date.

    Neither can fail the run: undelivered alerts stay pending for the next run, and the index is
    derived data. `deliver` returns a `flows.alerts.DeliveryReport`.

    Returns:
        (alerts delivered, deliveries failed).
    """
    delivered = failed = 0
    try:
        report = deliver()
        delivered, failed = report.delivered, report.failed
    except Exception as error:  # noqa: BLE001 - the alerts stay pending; the next run delivers them
        log.warning("alerts not delivered this run (the next run tries again): %s", error)
    try:
        update_search_index()
    except SearchIndexBusy:
        log.info("the search index is being written by another process; the next run updates it")
    except Exception as error:  # noqa: BLE001 - derived data: rebuilt from DuckDB when next needed
        log.warning("search index not updated: %s", error)
    return delivered, failed


def _flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in, if any (Prefect is not imported for it)."""
    if "prefect" not in sys.modules:
        return None
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context is not None and context.flow_run is not None else None


def _run_logger(run_id: str | None):
    if run_id is None:
        return logging.getLogger(__name__)
    from prefect import get_run_logger

    return get_run_logger()


def run_markdown(record: RunRecord) -> str:
    """A run's counts as a Markdown table."""
    seconds = (record.finished_at - record.started_at).total_seconds() if record.finished_at else 0
    rows = [
        ("status", record.status), ("duration", f"{seconds:.1f} s"), ("feeds polled", record.feeds_polled),
        ("not modified (304)", record.not_modified), ("new articles", record.new_articles),
        ("of which duplicates", record.duplicates), ("new stories", record.new_stories), ("errors", record.errors),
    ]
    return f"## {record.flow} run\n\n| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)
