"""`newswatch run` and `newswatch reextract`: the commands that ingest and rebuild articles."""

import threading
from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import (
    REPORTED_ERRORS,
    DbOption,
    check_embed_device,
    check_model,
    command_settings,
    console,
    fail,
    first_line,
    reported_errors,
)
from flows.commands.database import check_run_can_start, open_database
from flows.commands.reading import print_stories
from flows.disk import disk_failure
from flows.feed_list import import_feed_file
from flows.log_filters import quiet_reported_errors
from flows.service import use_running_service
from warehouse.feeds import list_feeds


def _load_in_background(embedder) -> None:
    """Load the model while Prefect starts its server: both take seconds."""

    def load() -> None:
        try:
            embedder.load()
        except Exception:  # noqa: BLE001 - the flow loads it again, and the command reports the error in one line
            pass

    threading.Thread(target=load, daemon=True).start()


def run(
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="Ingest this folder of article files (*.txt, *.html) instead of the feeds.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Ingest articles (due feeds, or a folder of files), link duplicates, assign stories, load DuckDB.

    Example: newswatch run --fixtures tests/fixtures/seeds --db newswatch.duckdb
    """
    settings = command_settings(db=db)
    check_embed_device(settings)
    check_model(settings)
    if fixtures is not None and not fixtures.exists():
        fail(f"fixture folder {fixtures} does not exist")
    if fixtures is not None and not fixtures.is_dir():
        fail(f"fixture path {fixtures} is not a folder")
    check_run_can_start(settings)
    from datetime import UTC, datetime

    if fixtures is None and settings.feeds_file is not None:
        with reported_errors():
            import_feed_file(settings.feeds_file, settings.db, datetime.now(UTC), settings)
        settings = settings.model_copy(update={"feeds_file": None})  # imported: the flow need not read it again
    with open_database(settings) as connection:
        feed_count = len(list_feeds(connection))
    if fixtures is None and not feed_count:
        fail("no feeds to poll: add one with `newswatch add-feed URL`, or pass --fixtures DIR")
    if (summary := _idle_run(settings, fixtures)) is not None:  # nothing new: no flow, no model
        _print_run_summary(summary, fixtures, settings)
        return

    use_running_service(settings, say=console.print)
    import signal

    from flows.embedding import get_embedder
    from flows.ingest import ingest_feeds, ingest_fixtures
    from flows.processes import stop_now, stop_on_signals, stop_signal, temporary_server_dies_with_this_process

    kept = "the batches stored before were kept"
    stop_on_signals(kept)
    temporary_server_dies_with_this_process()
    _load_in_background(get_embedder(settings))
    quiet_reported_errors(REPORTED_ERRORS)
    try:
        if fixtures is not None:
            summary = ingest_fixtures(fixtures.resolve(), settings.db, settings)
        else:
            summary = ingest_feeds(settings.db, settings)
    except BaseException as error:
        if stop_signal() is not None or isinstance(error, KeyboardInterrupt):
            # Whatever the interrupted step raised: the run was stopped, and what it stored stays.
            signum = stop_signal() or signal.SIGINT
            stop_now(128 + signum, f"stopped by {signal.Signals(signum).name}; {kept}")
        if (cause := disk_failure(error)) is not None:
            fail(f"the run stopped: {cause} where database {settings.db} keeps its files ({first_line(error)}); "
                 f"{kept}: make room or fix the permissions and run again")
        if isinstance(error, REPORTED_ERRORS):
            fail(str(error))
        raise
    _print_run_summary(summary, fixtures, settings)


def _idle_run(settings, fixtures: Path | None):
    """The summary of a run with nothing new, finished without a flow (`flows.idle`); None when there is work."""
    from flows.idle import finish_idle_run, idle_feed_run, idle_fixture_run

    with reported_errors():
        idle = idle_fixture_run(fixtures.resolve(), settings) if fixtures is not None else idle_feed_run(settings)
        return finish_idle_run(idle, settings) if idle is not None else None


def _print_run_summary(summary, fixtures: Path | None, settings) -> None:
    """What a run did, then the latest stories."""
    for skip in summary.skipped:
        typer.echo(f"warning: skipped {skip.path}: {skip.reason}", err=True)
    if fixtures is None:
        console.print(
            f"polled {summary.feeds_polled} feeds ({summary.not_modified} not modified), "
            f"{summary.failures} fetch failures (see `newswatch feeds`)"
        )
        console.print(
            f"fetched {summary.read} new entries, new articles {summary.new_articles} "
            f"({summary.duplicates} duplicates), new stories {summary.new_stories}"
        )
        if summary.message:  # why nothing was polled (`flows.idle`)
            console.print(summary.message)
    else:
        console.print(
            f"read {summary.read} files, skipped {len(summary.skipped)}, already stored {summary.already_stored}, "
            f"new articles {summary.new_articles} ({summary.duplicates} duplicates), new stories {summary.new_stories}"
        )
    if summary.alerts or summary.delivered or summary.delivery_failures:
        console.print(
            f"alerts: {summary.alerts} new, {summary.delivered} delivered, {summary.delivery_failures} not delivered "
            "(retried by later runs; see `newswatch watches`)"
        )
    print_stories(settings)


def reextract(
    db: DbOption = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Re-extract every stored page, not only those from another extractor version.")
    ] = False,
) -> None:
    """Rebuild article texts from the stored raw pages with the installed extractor (no refetching).

    Example: newswatch reextract --db newswatch.duckdb
    """
    from flows.maintenance import reextract_pages

    settings = command_settings(db=db)
    check_embed_device(settings)
    check_model(settings)
    if not settings.db.exists():
        fail(f"database {settings.db} does not exist yet: run `newswatch run` first")
    check_run_can_start(settings)
    quiet_reported_errors(REPORTED_ERRORS)
    with reported_errors():
        summary = reextract_pages(settings.db, settings, everything=everything)
    console.print(
        f"re-extracted {summary.pages} pages: {summary.changed} texts changed, {summary.unchanged} unchanged, "
        f"{summary.failed} gave no text (kept as stored); {summary.new_embeddings} new embeddings"
    )
