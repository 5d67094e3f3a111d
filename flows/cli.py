"""The `newswatch` command line."""

import os

# Set before Prefect and transformers are imported: no telemetry, no hub access, quiet loading.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from extract.embed import EmbeddingModelError
from flows.disk import disk_failure
from flows.feed_list import FeedFileError, import_feed_file
from flows.service import ServiceError, prefect_home
from flows.settings import check_cron_expressions, load_settings, settings_error_message
from warehouse.connection import WarehouseError, open_warehouse, run_lock
from warehouse.feeds import attention_reasons, list_feeds
from warehouse.queries import list_stories, story_articles

app = typer.Typer(
    help="newswatch: ingest news, link duplicates and group articles into stories in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for a readable table when printing to a file or pipe.
console = Console(width=None if Console().is_terminal else 140)

DbOption = Annotated[
    Path | None, typer.Option("--db", help="DuckDB file (default: $NEWSWATCH_DB, else ./newswatch.duckdb).")
]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def fail(message: str) -> None:
    """Print one line to stderr and exit 2."""
    typer.echo(f"newswatch: error: {message}", err=True)
    raise typer.Exit(2)


def _settings(**overrides):
    try:
        return load_settings(**overrides)
    except ValidationError as error:
        fail(settings_error_message(error))


def _refuse_special_file(db: Path) -> None:
    if db.exists() and not db.is_file() and not db.is_dir():  # DuckDB's open of a FIFO would hang
        fail(f"database path {db} is not a regular file")


# Errors whose message is already one sentence for the user: reported as such, exit 2.
_REPORTED_ERRORS = (WarehouseError, EmbeddingModelError, FeedFileError, ServiceError)


@contextmanager
def _reported_errors():
    """One line and exit 2 for an error the library states in one sentence."""
    try:
        yield
    except _REPORTED_ERRORS as error:
        fail(str(error))


@contextmanager
def _warehouse(settings, *, read_only: bool = False):
    """The settings' warehouse, open; one line and exit 2 when it cannot be opened or used, or is damaged."""
    db = settings.db
    _refuse_special_file(db)
    if not read_only:
        _check_database(settings)
    with _reported_errors(), open_warehouse(db, read_only=read_only, memory_limit=settings.duckdb_memory_limit) as connection:
        yield connection


def _check_run_can_start(settings) -> None:
    """Fail in one line, before a flow starts, when another run holds the database or it is damaged.

    Inside the flow the same failures would come with Prefect's traceback. The flow takes the run
    lock itself; this only tries it, and only when its file exists, so nothing is created here.
    """
    db = settings.db
    if db.name and db.with_name(db.name + ".run.lock").is_file():  # `run_lock`'s file, made by the first run
        try:
            with _reported_errors(), run_lock(db):
                pass
        except OSError as error:
            fail(f"cannot take the run lock of database {db}: {error.strerror or error}")
    _check_database(settings)


_checked_databases: set[Path] = set()


def _check_database(settings) -> None:
    """Fail in one line when DuckDB finds an existing database damaged, before this command writes to it (once)."""
    from warehouse.integrity import check_database

    _refuse_special_file(settings.db)
    if settings.db.resolve() in _checked_databases:
        return
    with _reported_errors():
        check_database(settings.db, memory_limit=settings.duckdb_memory_limit)
    _checked_databases.add(settings.db.resolve())


class _NoTracebackForReportedErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], _REPORTED_ERRORS) or disk_failure(record.exc_info[1])):
            record.exc_info = record.exc_text = None  # the message line stays; the command prints the error
        return True


def _quiet_reported_errors() -> None:
    """Keep Prefect from logging a traceback for an error that the command reports in one line."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(item, _NoTracebackForReportedErrors) for item in logger.filters):
            logger.addFilter(_NoTracebackForReportedErrors())


def _load_in_background(embedder) -> None:
    """Load the model while Prefect starts its server: both take seconds."""

    def load() -> None:
        try:
            embedder.load()
        except Exception:  # noqa: BLE001 - the flow loads it again, and the command reports the error in one line
            pass

    threading.Thread(target=load, daemon=True).start()


def _check_model(settings) -> None:
    """Fail in one line when the embedding model cannot be found (files only: the model is not loaded)."""
    from extract.embed import check_model

    try:
        check_model(settings.model)
    except EmbeddingModelError as error:
        fail(f"{error} (NEWSWATCH_MODEL)")


def _check_embed_device(settings) -> None:
    """Fail in one line when the settings ask for a GPU that torch does not see."""
    if settings.embed_device.startswith("cuda"):
        from extract.embed import EmbeddingDeviceError, resolve_device

        try:
            resolve_device(settings.embed_device)
        except EmbeddingDeviceError as error:
            fail(f"{error} (NEWSWATCH_EMBED_DEVICE)")


@app.command()
def run(
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="Ingest this folder of article files (*.txt, *.html) instead of the feeds.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Ingest articles (due feeds, or a folder of files), link duplicates, assign stories, load DuckDB.

    Example: newswatch run --fixtures tests/fixtures/seeds --db newswatch.duckdb
    """
    settings = _settings(db=db)
    _check_embed_device(settings)
    _check_model(settings)
    if fixtures is not None and not fixtures.exists():
        fail(f"fixture folder {fixtures} does not exist")
    if fixtures is not None and not fixtures.is_dir():
        fail(f"fixture path {fixtures} is not a folder")
    _check_run_can_start(settings)
    from datetime import UTC, datetime

    if fixtures is None and settings.feeds_file is not None:
        with _reported_errors():
            import_feed_file(settings.feeds_file, settings.db, datetime.now(UTC), settings)
    with _warehouse(settings) as connection:
        feed_count = len(list_feeds(connection))
    if fixtures is None and not feed_count:
        fail("no feeds to poll: add one with `newswatch add-feed URL`, or pass --fixtures DIR")
    if (summary := _idle_run(settings, fixtures)) is not None:  # nothing new: no flow, no model
        _print_run_summary(summary, fixtures, settings)
        return

    _use_running_service(settings)
    import signal

    from flows.embedding import get_embedder
    from flows.ingest import ingest_feeds, ingest_fixtures

    from flows.processes import stop_now, stop_on_signals, stop_signal, temporary_server_dies_with_this_process

    kept = "the batches stored before were kept"
    stop_on_signals(kept)
    temporary_server_dies_with_this_process()
    _load_in_background(get_embedder(settings))
    _quiet_reported_errors()
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
            fail(f"the run stopped: {cause} where database {settings.db} keeps its files ({_first_line(error)}); "
                 f"{kept}: make room or fix the permissions and run again")
        if isinstance(error, _REPORTED_ERRORS):
            fail(str(error))
        raise
    _print_run_summary(summary, fixtures, settings)


def _idle_run(settings, fixtures: Path | None):
    """The summary of a run with nothing new, finished without a flow (`flows.idle`); None when there is work."""
    from flows.idle import finish_idle_run, idle_feed_run, idle_fixture_run

    with _reported_errors():
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
    _print_clusters(settings)


@app.command()
def clusters(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many stories to show.")] = 20,
) -> None:
    """Print the most recent stories with their articles, marking duplicates.

    Example: newswatch clusters --db newswatch.duckdb --limit 10
    """
    settings = _settings(db=db)
    _print_clusters(settings, limit)


def _feed_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"not an http(s) feed URL: {url}")
    return url.strip()


@app.command()
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

    settings = _settings(db=db)
    _check_embed_device(settings)
    _check_model(settings)
    if not settings.db.exists():
        fail(f"database {settings.db} does not exist yet: run `newswatch run` first")
    _check_run_can_start(settings)
    _quiet_reported_errors()
    with _reported_errors():
        summary = reextract_pages(settings.db, settings, everything=everything)
    console.print(
        f"re-extracted {summary.pages} pages: {summary.changed} texts changed, {summary.unchanged} unchanged, "
        f"{summary.failed} gave no text (kept as stored); {summary.new_embeddings} new embeddings"
    )


@app.command("add-feed")
def add_feed_command(
    url: Annotated[str, typer.Argument(help="Feed URL (RSS, Atom or JSON Feed).")],
    name: Annotated[str | None, typer.Option("--name", help="A name to show instead of the URL.")] = None,
    db: DbOption = None,
) -> None:
    """Add a feed to poll; it is due at once.

    Example: newswatch add-feed https://www.example.com/rss.xml --name "Example News"
    """
    from datetime import UTC, datetime

    from warehouse.feeds import add_feed

    settings = _settings(db=db)
    url = _feed_url(url)
    with _warehouse(settings) as connection:
        added = add_feed(connection, url, name, datetime.now(UTC))
    console.print(f"added {url}" if added else f"already listed: {url}")


@app.command("remove-feed")
def remove_feed_command(
    feed: Annotated[str, typer.Argument(help="Feed URL or id (see `newswatch feeds`).")],
    db: DbOption = None,
) -> None:
    """Stop polling a feed; its articles stay.

    Example: newswatch remove-feed https://www.example.com/rss.xml
    """
    from warehouse.feeds import remove_feed

    settings = _settings(db=db)
    with _warehouse(settings) as connection:
        removed = remove_feed(connection, feed)
    if not removed:
        fail(f"no feed {feed}")
    console.print(f"removed {feed}")


@app.command("import-opml")
def import_opml_command(
    file: Annotated[Path, typer.Argument(help="OPML file exported by a feed reader.")],
    db: DbOption = None,
) -> None:
    """Add every feed listed in an OPML file.

    Example: newswatch import-opml subscriptions.opml
    """
    from datetime import UTC, datetime

    settings = _settings(db=db)
    if file.exists() and not file.is_file() and not file.is_dir():  # reading a FIFO would hang
        fail(f"cannot read {file}: not a regular file")
    _check_database(settings)
    with _reported_errors():
        listed, added = import_feed_file(file, settings.db, datetime.now(UTC), settings)
    console.print(f"{listed} feeds in {file}: {added} added, {listed - added} already listed")


@app.command("export-opml")
def export_opml_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    db: DbOption = None,
) -> None:
    """Write the feed list as OPML 2.0.

    Example: newswatch export-opml -o feeds.opml
    """
    from extract.opml import OpmlFeed, write_opml

    settings = _settings(db=db)
    with _warehouse(settings, read_only=True) as connection:
        feeds = list_feeds(connection)
    document = write_opml([OpmlFeed(feed.url, feed.name) for feed in feeds])
    if output is None:
        typer.echo(document)
    else:
        try:
            output.write_text(document, encoding="utf-8")
        except OSError as error:
            fail(f"cannot write {output}: {error.strerror or error}")
        console.print(f"wrote {len(feeds)} feeds to {output}")


@app.command("feeds")
def feeds_command(db: DbOption = None) -> None:
    """List the feeds and their health: last status, failures, next poll, silence.

    Example: newswatch feeds --db newswatch.duckdb
    """
    from datetime import UTC, datetime, timedelta


    settings = _settings(db=db)
    with _warehouse(settings, read_only=True) as connection:
        feeds = list_feeds(connection)
    if not feeds:
        console.print("No feeds yet: add one with `newswatch add-feed URL`.")
        return
    now = datetime.now(UTC)
    silent_after = timedelta(days=settings.silent_feed_days)
    table = Table(title=f"{len(feeds)} feeds in {settings.db}", expand=True)
    for column in ("Feed", "Status", "Last success", "Failures", "Next poll", "Last new item", "Attention"):
        table.add_column(column, overflow="fold")
    for feed in feeds:
        attention = [
            f"[{'red' if reason.startswith('failing') else 'yellow'}]{escape(reason)}[/]"
            for reason in attention_reasons(feed, now, silent_after)
        ]
        table.add_row(
            escape(feed.name or feed.url) + (f"\n[dim]{escape(feed.url)}[/dim]" if feed.name else ""),
            "—" if feed.last_status is None else str(feed.last_status),
            _date(feed.last_success_at),
            str(feed.consecutive_failures),
            _date(feed.next_due_at),
            _date(feed.last_new_item_at),
            " ".join(attention),
        )
    console.print(table)


IntervalOption = Annotated[
    float | None,
    typer.Option("--interval", min=1, help="Seconds between feed runs (default: $NEWSWATCH_SERVE_INTERVAL_SECONDS, 900)."),
]
CronOption = Annotated[str | None, typer.Option("--cron", help="Cron expression for feed runs instead of an interval.")]


def _use_running_service(settings) -> None:
    """Run on the Prefect server of a `serve` running with this Prefect home, so the run shows in its UI and its list of runs.

    Only when PREFECT_API_URL is not set and the service's server answers; otherwise Prefect
    starts its temporary server for this run. Call before Prefect is imported.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    from flows.service import api_is_healthy, read_state

    state = read_state(prefect_home(settings))
    if state and state.get("api_url") and api_is_healthy(state["api_url"]):
        os.environ["PREFECT_API_URL"] = state["api_url"]
        console.print(f"on the Prefect server of the running service ({state['api_url']})")


def _service_settings(db, interval, cron):
    if interval is not None and cron is not None:
        fail("give --interval or --cron, not both")
    settings = _settings(db=db, serve_interval_seconds=interval, serve_cron=cron)
    _check_embed_device(settings)
    if interval is not None:
        settings = settings.model_copy(update={"serve_cron": None})
    try:
        check_cron_expressions(settings)
    except ValueError as error:
        fail(str(error))
    return settings


@app.command()
def serve(
    db: DbOption = None,
    interval: IntervalOption = None,
    cron: CronOption = None,
    api: Annotated[
        bool, typer.Option("--api", help="Also serve the read-only HTTP API (`newswatch api` on $NEWSWATCH_API_HOST:$NEWSWATCH_API_PORT).")
    ] = False,
) -> None:
    """Run the feed ingest on a schedule, plus a daily maintenance run, until stopped (Ctrl+C or SIGTERM).

    Without PREFECT_API_URL a Prefect server is started on $NEWSWATCH_PREFECT_HOST (127.0.0.1;
    SQLite in $NEWSWATCH_PREFECT_HOME, default prefect/ beside the database) and stopped on exit.
    With --api the HTTP API runs beside it (its log in api.log in that folder) and stops with it.

    Example: newswatch serve --db /data/newswatch.duckdb --interval 600 --api
    """
    from flows.service import own_server_api_url, serve_until_stopped

    started = time.monotonic()
    own_server = not os.environ.get("PREFECT_API_URL")
    if own_server:
        # Set before Prefect is first imported (it reads its settings then): every Prefect call of
        # this process and of the flow runs it starts goes to the server the service starts.
        os.environ["PREFECT_API_URL"] = own_server_api_url(_settings(db=db))
    settings = _service_settings(db, interval, cron)
    _check_model(settings)
    if api:
        from flows.api import is_loopback

        if not is_loopback(settings.api_host) and settings.api_token is None:
            fail(f"serving the API on {settings.api_host}, not a loopback address, needs a token: set NEWSWATCH_API_TOKEN")
    with _warehouse(settings):
        pass  # create or upgrade it now: a bad path fails here, not in the first scheduled run
    with _reported_errors():
        serve_until_stopped(settings, own_server=own_server, started=started, say=console.print, api=api)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Prefect work pool (create it with `prefect work-pool create NAME --type process`).")],
    db: DbOption = None,
    interval: IntervalOption = None,
    cron: CronOption = None,
) -> None:
    """Register the scheduled ingest and maintenance deployments with a work pool of the Prefect server at PREFECT_API_URL.

    Workers started with `prefect worker start --pool NAME` on machines with newswatch installed run them.

    Example: PREFECT_API_URL=http://127.0.0.1:4200/api newswatch deploy --pool newswatch --db /data/newswatch.duckdb
    """
    settings = _service_settings(db, interval, cron)
    api_url = os.environ.get("PREFECT_API_URL")
    from flows.service import api_is_healthy

    if not api_url:
        fail("deploy needs a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    if not api_is_healthy(api_url):
        fail(f"the Prefect server at PREFECT_API_URL={api_url} does not answer")
    from prefect.exceptions import ObjectNotFound

    from flows.deployments import build_deployments
    from flows.service import work_pool_exists

    if not work_pool_exists(pool):
        fail(f"work pool {pool!r} does not exist: create it with `prefect work-pool create {pool} --type process`")
    try:
        # RunnerDeployment.apply rather than prefect.deploy, whose worker lookup fails on Prefect 3.8.
        ids = [deployment.apply(work_pool_name=pool) for deployment in build_deployments(settings.db.resolve(), settings)]
    except ObjectNotFound as error:
        fail(f"the Prefect server refused the deployment: {str(error).strip().splitlines()[0]}")
    console.print(f"deployed {len(ids)} deployments to work pool {pool!r}; run them with `prefect worker start --pool {pool}`")


@app.command()
def status(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs to show.")] = 10,
    check: Annotated[bool, typer.Option("--check", help="Only check that the service is up, its Prefect UI included (exit 0), or not (exit 1).")] = False,
) -> None:
    """Show the last runs, the next scheduled runs and the feeds needing attention.

    Example: newswatch status --db newswatch.duckdb
    """
    from datetime import UTC, datetime, timedelta

    from flows.service import api_is_healthy, read_state
    from warehouse.runs import recent_runs

    settings = _settings(db=db)
    state = read_state(prefect_home(settings))
    api_url = os.environ.get("PREFECT_API_URL") or (state or {}).get("api_url")
    healthy = bool(api_url) and api_is_healthy(api_url)
    if check:
        if not healthy:
            typer.echo("newswatch: service is not running" if not api_url else f"newswatch: Prefect API {api_url} does not answer", err=True)
            raise typer.Exit(1)
        if (state or {}).get("ui"):
            from flows.service import ui_is_up

            if not ui_is_up(api_url):
                typer.echo(f"newswatch: the Prefect UI beside {api_url} does not answer (see server.log in the Prefect home)", err=True)
                raise typer.Exit(1)
            console.print(f"ok: Prefect API {api_url} and its UI are up")
            return
        console.print(f"ok: Prefect API {api_url} is healthy")
        return
    from extract.notify import mask_url
    from warehouse.watches import delivery_health

    with _warehouse(settings, read_only=True) as connection:
        runs = recent_runs(connection, limit)
        feeds = list_feeds(connection)
        deliveries = delivery_health(connection)
    now = datetime.now(UTC)
    if state:
        console.print(f"Service: running since {state['started_at'][:19]}Z (pid {state['pid']}), feed runs {state['schedule']}")
    else:
        console.print("Service: not running here (start it with `newswatch serve`)")
    if healthy:
        from flows.service import next_scheduled_runs

        upcoming = next_scheduled_runs(api_url)
        for name, when in upcoming:
            console.print(f"Next {name}: {_date(when)} UTC (in {max(0, (when - now).total_seconds()):.0f} s)")
        if not upcoming:
            console.print("Next runs: none scheduled")
    table = Table(title=f"Last {len(runs)} runs in {settings.db}", expand=True)
    for column in ("Started", "Flow", "Status", "Seconds", "Feeds", "304", "New", "Dups", "Stories", "Errors", "Note"):
        table.add_column(column, overflow="fold")
    for record in runs:
        seconds = (record.finished_at - record.started_at).total_seconds() if record.finished_at else None
        colour = {"completed": "green", "running": "cyan"}.get(record.status, "red")
        table.add_row(
            _date(record.started_at), record.flow, f"[{colour}]{record.status}[/]",
            "—" if seconds is None else f"{seconds:.1f}", str(record.feeds_polled), str(record.not_modified),
            str(record.new_articles), str(record.duplicates), str(record.new_stories), str(record.errors),
            escape(record.message or ""),
        )
    console.print(table if runs else "No runs yet.")
    silent_after = timedelta(days=settings.silent_feed_days)
    attention = [(feed, reasons) for feed in feeds if (reasons := attention_reasons(feed, now, silent_after))]
    if attention:
        console.print(f"{len(attention)} of {len(feeds)} feeds need attention:")
        for feed, reasons in attention:
            console.print(f"  {escape(feed.name or feed.url)}: {escape('; '.join(reasons))}")
    else:
        console.print(f"All {len(feeds)} feeds are healthy.")
    if any(deliveries[status] for status in ("delivered", "pending", "failed")):
        line = (f"Alert deliveries: {deliveries['delivered']} delivered, {deliveries['pending']} pending, "
                f"{deliveries['failed']} failed")
        last = deliveries["last_failure"]
        if last:
            line += f"; last failure {_date(last['at'])} to {mask_url(last['url'])}: {last['error']}"
        console.print(escape(line))


WhenOption = Annotated[
    str | None,
    typer.Option("--since", help="Only articles seen since: a duration back from now (30m, 24h, 7d, 2w) or an ISO date (2026-12-01)."),
]


def _since(text: str | None):
    """The start of a period from `--since`, or None; one line and exit 2 when it is neither a duration nor a date."""
    if text is None:
        return None
    from datetime import UTC, datetime

    from flows.digest import PeriodError, parse_since

    try:
        return parse_since(text, datetime.now(UTC))
    except PeriodError as error:
        fail(str(error))


@contextmanager
def _search_index_errors():
    """One line and exit 2 when the search index cannot be used or rebuilt (its folder holds other files)."""
    from extract.search_index import SearchIndexError

    try:
        yield
    except SearchIndexError as error:
        fail(str(error))


def _checked_query(text: str):
    from extract.query import QueryError, parse_query

    try:
        return parse_query(text)
    except QueryError as error:
        fail(f"invalid query {text!r}: {error}")


def _checked_notify_urls(urls: list[str], settings) -> list[str]:
    """The notification URLs, each known to Apprise and allowed by the SSRF guard; else one line and exit 2."""
    from extract.notify import NotifyError, check_url, guard_url

    # Apprise logs its own parse errors ("Unparseable URL ..."); once Prefect is imported (as by
    # `digest`) they would reach its console handler beside our one line. They still reach
    # extract.notify's masking filter on the logger, which words the error.
    apprise_logger = logging.getLogger("apprise")
    propagate, apprise_logger.propagate = apprise_logger.propagate, False
    checked = []
    try:
        for url in urls:
            try:
                url = check_url(url)
                guard_url(url, allow_private_networks=settings.allow_private_networks, timeout=settings.notify_timeout)
            except NotifyError as error:
                fail(str(error))
            checked.append(url)
    finally:
        apprise_logger.propagate = propagate
    return checked


@app.command("add-watch")
def add_watch_command(
    name: Annotated[str, typer.Argument(help="A name for the watch (unique).")],
    query: Annotated[
        str | None, typer.Option("--query", help='Keyword query: words, "exact phrases", AND, OR, NOT and parentheses.')
    ] = None,
    like: Annotated[str | None, typer.Option("--like", help="A description of the event, matched by meaning.")] = None,
    min_articles: Annotated[int, typer.Option("--min-articles", min=1, help="Alert once the story has this many articles.")] = 1,
    min_sources: Annotated[int, typer.Option("--min-sources", min=1, help="... from at least this many sources.")] = 1,
    notify: Annotated[
        list[str] | None,
        typer.Option("--notify", help="Apprise URL to alert (json://, jsons://, mailto://, slack://, ntfy://, ...); repeatable."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Watch for stories that match a keyword query or a description; alert when one appears or grows.

    Every ingest run (fixtures or feeds) evaluates every watch against the stories it created or
    grew; an alert goes out once per story, when it meets --min-articles and --min-sources, and
    again as developing when the story has doubled. Without --notify, alerts are only stored.

    Example: newswatch add-watch musk-gaza --query '"Elon Musk" AND Gaza' --min-sources 2 --notify jsons://hooks.example.org/news
    """
    from datetime import UTC, datetime

    from extract.notify import mask_url
    from warehouse.sql import transaction
    from warehouse.watches import add_watch

    settings = _settings(db=db)
    name = " ".join(name.split())
    if not name:
        fail("a watch needs a name")
    if (query is None) == (like is None):
        fail("give --query or --like (one of them)")
    if query is not None:
        _checked_query(query)
    if like is not None and not like.strip():
        fail("--like needs a description of the event")
    urls = _checked_notify_urls(notify or [], settings)
    vector = model = None
    if like is not None:
        _check_embed_device(settings)
        _check_model(settings)
        from flows.embedding import embedding_model_key, get_embedder

        with _reported_errors():
            vector = get_embedder(settings).embed([like.strip()])[0][0]
        model = embedding_model_key(settings)
    with _warehouse(settings) as connection, transaction(connection):
        watch_id = add_watch(
            connection, name, query=query, like_text=like.strip() if like is not None else None, like_vector=vector,
            like_model=model, min_articles=min_articles, min_sources=min_sources, notify_urls=urls, now=datetime.now(UTC),
        )
    if watch_id is None:
        fail(f"a watch named {name!r} exists already (see `newswatch watches`)")
    targets = ", ".join(mask_url(url) for url in urls) or "nobody (alerts are stored only)"
    console.print(escape(f"added watch {watch_id} {name!r}: alerts {targets} from the next run"))


@app.command("remove-watch")
def remove_watch_command(
    watch: Annotated[str, typer.Argument(help="Watch name or id (see `newswatch watches`).")],
    db: DbOption = None,
) -> None:
    """Stop a watch; its matches, alerts and pending deliveries go with it.

    Example: newswatch remove-watch musk-gaza
    """
    from warehouse.sql import transaction
    from warehouse.watches import find_watch, remove_watch

    settings = _settings(db=db)
    with _warehouse(settings) as connection, transaction(connection):
        found = find_watch(connection, watch)
        if found is not None:
            remove_watch(connection, found.watch_id)
    if found is None:
        fail(f"no watch {watch}")
    console.print(escape(f"removed watch {found.watch_id} {found.name!r}"))


def _looks_for(watch) -> str:
    return f"query {watch.query}" if watch.query is not None else f"like: {watch.like_text}"


@app.command("watches")
def watches_command(db: DbOption = None) -> None:
    """List the watches: what each looks for, its last match, its alerts and the health of their deliveries.

    Notification URLs are shown with their secrets masked.

    Example: newswatch watches --db newswatch.duckdb
    """
    from extract.notify import mask_url
    from warehouse.watches import watch_overviews

    settings = _settings(db=db)
    with _warehouse(settings, read_only=True) as connection:
        overviews = watch_overviews(connection)
    if not overviews:
        console.print("No watches yet: add one with `newswatch add-watch NAME --query QUERY`.")
        return
    table = Table(title=f"{len(overviews)} watches in {settings.db}", expand=True)
    for column in ("Id", "Watch", "Looks for", "Alerts when", "Notifies", "Last match", "Alerts", "Deliveries"):
        table.add_column(column, overflow="fold")
    for item in overviews:
        watch = item.watch
        last = f"{_date(item.last_matched_at)} {item.last_headline or ''}".strip() if item.last_matched_at else "—"
        health = f"{item.delivered} delivered, {item.pending} pending, {item.failed} failed"
        if item.last_error:
            health += f"\nlast error {_date(item.last_error_at)}: {item.last_error}"
        table.add_row(
            str(watch.watch_id), escape(watch.name), escape(_looks_for(watch)),
            f"≥ {watch.min_articles} articles, ≥ {watch.min_sources} sources",
            escape("\n".join(mask_url(url) for url in watch.notify_urls) or "—"),
            escape(last) + (f"\n[dim]{item.matched_stories} stories matched[/dim]" if item.matched_stories else ""),
            str(item.alerts),
            f"[{'red' if item.failed else 'yellow' if item.pending else 'green'}]{escape(health)}[/]",
        )
    console.print(table)


@app.command("test-watch")
def test_watch_command(
    watch: Annotated[str, typer.Argument(help="Watch name or id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many stories to show.")] = 20,
    db: DbOption = None,
) -> None:
    """Show which stored stories a watch matches now, and which of them would alert; nothing is sent or stored.

    Example: newswatch test-watch musk-gaza
    """
    from flows import search
    from warehouse.queries import list_stories
    from warehouse.watches import find_watch

    settings = _settings(db=db)
    with _warehouse(settings, read_only=True) as connection:
        found = find_watch(connection, watch)
    if found is None:
        fail(f"no watch {watch}")
    with _reported_errors(), _search_index_errors():
        if found.query is not None:
            hits = search.keyword_hits(settings.db, settings, _checked_query(found.query), since=None, limit=10_000)
        else:
            _check_model(settings)
            hits = [(article_id, similarity) for article_id, similarity in
                    search.semantic_hits(settings.db, settings, found.like_text, limit=max(200, 20 * limit))
                    if similarity >= settings.watch_like_threshold]
    matched: dict[str, int] = {}
    with _warehouse(settings, read_only=True) as connection:
        from warehouse.queries import articles_by_id

        articles = articles_by_id(connection, [article_id for article_id, _ in hits])
        for article_id, _ in hits:
            if article_id in articles:
                story_id = articles[article_id]["story_id"]
                matched[story_id] = matched.get(story_id, 0) + 1
        stories = list_stories(connection, max(1, len(matched)), story_ids=list(matched), details=True) if matched else []
    console.print(escape(f"watch {found.watch_id} {found.name!r} ({_looks_for(found)}): {len(stories)} stored stories match"))
    if not stories:
        return
    table = Table(expand=True)
    for column in ("Story", "Articles", "Sources", "Matching articles", "Last seen", "Would alert"):
        table.add_column(column, overflow="fold")
    for story in stories[:limit]:
        alerts = story["article_count"] >= found.min_articles and len(story["sources"]) >= found.min_sources
        table.add_row(
            escape(story["headline"] or "(untitled)"), str(story["article_count"]), str(len(story["sources"])),
            str(matched[story["story_id"]]), _date(story["last_seen_at"]), "[green]yes[/]" if alerts else "no (too small)",
        )
    console.print(table)


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help='Words, "exact phrases", AND, OR, NOT, parentheses; with --semantic, a description.')],
    semantic: Annotated[bool, typer.Option("--semantic", help="Search by meaning with the pipeline's embedding model.")] = False,
    since: WhenOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many articles at most.")] = 20,
    db: DbOption = None,
) -> None:
    """Search the stored articles (full-text BM25, or by meaning) and print the results grouped by story.

    Example: newswatch search '"Elon Musk" AND (Gaza OR Hamas)' --since 7d
    """
    from flows import search

    settings = _settings(db=db)
    start = _since(since)
    if not semantic:
        _checked_query(query)
    else:
        _check_embed_device(settings)
        _check_model(settings)
    with _warehouse(settings, read_only=True):
        pass  # a missing or unusable database is one line
    with _reported_errors(), _search_index_errors():
        results = search.search(settings.db, settings, query, semantic=semantic, since=start, limit=limit)
    if not results:
        console.print("No article matches." if not semantic else "No stored article has a vector of this model yet.")
        return
    groups = search.group_by_story(results)
    console.print(f"{len(results)} articles in {len(groups)} stories")
    score = "similarity" if semantic else "score"
    for group in groups:
        first = group[0].article
        console.print(f"\n[bold]{escape(first['story_headline'] or '(untitled)')}[/bold] [dim](story {first['story_id']})[/dim]")
        for result in group:
            article = result.article
            duplicate = f" · {article['duplicate_kind']} duplicate" if article["duplicate_of"] else ""
            console.print(
                f"  • {escape(article['title'] or article['url'])}\n"
                f"    [dim]{escape(article['source_name'] or '')} · seen {_date(article['seen_at'])} · "
                f"{score} {result.score:.3g}{escape(duplicate)} · {escape(article['url'])}[/dim]"
            )


@app.command("digest")
def digest_command(
    since: Annotated[
        str, typer.Option("--since", help="Start of the period: a duration back from now (24h, 7d) or an ISO date.")
    ] = "24h",
    watch: Annotated[str | None, typer.Option("--watch", help="Only the stories this watch (name or id) has matched.")] = None,
    format: Annotated[str, typer.Option("--format", help="markdown, html (for a mail client) or json.")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    notify: Annotated[list[str] | None, typer.Option("--notify", help="Also send it to this Apprise URL; repeatable.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, max=1000, help="Stories (default: $NEWSWATCH_DIGEST_STORIES).")] = None,
    db: DbOption = None,
) -> None:
    """The top stories of a period, ranked by growth and size, with their sources, first and last seen and links.

    Example: newswatch digest --since 7d --watch musk-gaza --format html -o digest.html
    """
    from datetime import UTC, datetime

    from extract.digest import FORMATS, digest_message, render_digest
    from extract.notify import deliver, mask_url
    from flows.digest import UnknownWatch, build_digest

    settings = _settings(db=db)
    if format not in FORMATS:
        fail(f"unknown format {format!r}: expected {', '.join(FORMATS)}")
    start = _since(since)
    urls = _checked_notify_urls(notify or [], settings)
    with _warehouse(settings, read_only=True):
        pass
    try:
        with _reported_errors():
            digest = build_digest(settings.db, settings, start, datetime.now(UTC), watch=watch,
                                  limit=limit or settings.digest_stories)
    except UnknownWatch as error:
        fail(str(error))
    text = render_digest(digest, format)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            fail(f"cannot write {output}: {error.strerror or error}")
        console.print(f"wrote a digest of {len(digest['stories'])} stories to {escape(str(output))}")
    failed = False
    for url in urls:
        outcome = deliver(url, digest_message(digest), allow_private_networks=settings.allow_private_networks,
                          timeout=settings.notify_timeout)
        if outcome.ok:
            typer.echo(f"sent the digest to {mask_url(url)}", err=True)
        else:
            failed = True
            typer.echo(f"newswatch: error: the digest was not sent to {mask_url(url)}: {outcome.error}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def dashboard(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: $NEWSWATCH_DASHBOARD_HOST, else 127.0.0.1; 0.0.0.0: every interface, no login)."),
    ] = None,
) -> None:
    """Serve the read-only stories dashboard (on 127.0.0.1 unless --host says otherwise).

    It has no login: on another address than 127.0.0.1, anyone who reaches the port reads the
    stories (put it behind a reverse proxy with authentication; see docs/operations.md).

    Example: newswatch dashboard --db newswatch.duckdb --port 8501
    """
    import subprocess
    import sys

    import dashboards
    from flows.service import connect_address

    settings = _settings(db=db, dashboard_host=host)
    host = settings.dashboard_host
    app_path = Path(dashboards.__file__).parent / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--", "--db", str(settings.db),
    ]
    where = f"http://{connect_address(host)}:{port}"
    if host in ("0.0.0.0", "::"):
        where += f" and on every interface ({host}; read-only, no login)"
    console.print(f"Dashboard on {where} (Ctrl+C stops it)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def api(
    db: DbOption = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: $NEWSWATCH_API_HOST, else 127.0.0.1); any address but loopback needs $NEWSWATCH_API_TOKEN."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on (default: $NEWSWATCH_API_PORT, else 8000).")
    ] = None,
) -> None:
    """Serve the read-only HTTP API and Atom feeds of stories, searches and watches (on 127.0.0.1 unless --host says otherwise).

    Each request reads the database briefly and read-only, beside running pipelines; documentation
    at /docs. With $NEWSWATCH_API_TOKEN set, every endpoint but /health asks for it
    (Authorization: Bearer TOKEN); any address but loopback needs it.

    Example: newswatch api --db newswatch.duckdb --port 8000
    """
    import socket

    from flows.api import create_app, is_loopback
    from flows.service import connect_address

    settings = _settings(db=db, api_host=host, api_port=port)
    _refuse_special_file(settings.db)
    host, port = settings.api_host, settings.api_port
    if not is_loopback(host) and settings.api_token is None:
        fail(f"listening on {host}, not a loopback address, needs a token: set NEWSWATCH_API_TOKEN "
             "(e.g. `export NEWSWATCH_API_TOKEN=$(openssl rand -hex 32)`), or use --host 127.0.0.1")
    # Bound here, so that a port in use or an address this machine lacks is one line, not uvicorn's log.
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, protocol)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        fail(f"cannot listen on {host} port {port}: {error.strerror or error}")
    import uvicorn

    if not settings.db.exists():
        typer.echo(f"newswatch: warning: no database at {settings.db} yet; the API answers 503 until a run creates it", err=True)
    where = f"http://{connect_address(host)}:{port}"
    if not is_loopback(host):
        where += f" and on {host} (every endpoint but /health asks for the token)"
    console.print(f"API on {where}, documentation at /docs (Ctrl+C stops it)")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info", server_header=False, proxy_headers=True))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


@app.command("export")
def export_command(
    format: Annotated[str, typer.Option("--format", help="csv, jsonl (one JSON object a line) or parquet.")] = "csv",
    since: WhenOption = None,
    query: Annotated[
        str | None, typer.Option("--query", help='Only the articles matching this keyword query (words, "phrases", AND, OR, NOT).')
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    db: DbOption = None,
) -> None:
    """Export the articles with their story, duplicate link, source, language and dates, oldest seen first.

    Example: newswatch export --format parquet --since 7d --query 'musk AND gaza' -o musk.parquet
    """
    import io
    import sys

    from warehouse.exports import EXPORT_FORMATS, article_export_table, write_article_export

    settings = _settings(db=db)
    if format not in EXPORT_FORMATS:
        fail(f"unknown format {format!r}: expected {', '.join(EXPORT_FORMATS)}")
    if output is None and format == "parquet" and sys.stdout.isatty():
        fail("Parquet is binary: give -o FILE (or redirect standard output)")
    if output is not None and output.is_dir():
        fail(f"cannot write {output}: it is a folder")
    start = _since(since)
    article_ids = None
    if query is not None:
        from flows import search

        parsed = _checked_query(query)
        with _warehouse(settings, read_only=True):
            pass  # a missing or unusable database is one line
        with _reported_errors(), _search_index_errors():
            article_ids = [article_id for article_id, _ in
                           search.keyword_hits(settings.db, settings, parsed, since=start, limit=search.MAX_SELECTED_ARTICLES)]
    with _warehouse(settings, read_only=True) as connection:
        table = article_export_table(connection, since=start, article_ids=article_ids)
    if output is None:
        buffer = io.BytesIO()
        write_article_export(table, format, buffer)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as file:
            write_article_export(table, format, file)
        partial.replace(output)  # a reader never sees half a file
    except OSError as error:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"wrote {table.num_rows} articles to {escape(str(output))}")


def _date(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def _print_clusters(settings, limit: int = 20) -> None:
    db = settings.db
    with _warehouse(settings, read_only=True) as connection:
        stories = list_stories(connection, limit)
        members = story_articles(connection, [story["story_id"] for story in stories])
    if not stories:
        console.print("No stories yet.")
        return
    titles = {member["article_id"]: member["title"] or member["url"] for member in members}
    table = Table(title=f"{len(stories)} most recent stories in {db}", expand=True)
    table.add_column("Story / article", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("Articles", justify="right", no_wrap=True)
    table.add_column("Published", no_wrap=True)
    table.add_column("Duplicate of", ratio=1, no_wrap=True, overflow="ellipsis")
    for story in stories:
        size = f"{story['article_count']}" + (f" ({story['duplicate_count']} dup)" if story["duplicate_count"] else "")
        dates = _date(story["first_published_at"])
        if story["last_published_at"] != story["first_published_at"]:
            dates += f" → {_date(story['last_published_at'])}"
        table.add_row(f"[bold]{escape(story['headline'] or '(untitled)')}[/bold]", size, dates, "")
        for member in (m for m in members if m["story_id"] == story["story_id"]):
            duplicate = ""
            if member["duplicate_of"]:
                original = titles.get(member["duplicate_of"], member["duplicate_of"])
                duplicate = f"[yellow]{member['duplicate_kind']} {member['duplicate_similarity']:.2f}: {escape(original)}[/yellow]"
            marker = "[yellow]⧉ DUPLICATE[/yellow] " if member["duplicate_of"] else ""
            table.add_row(f"  • {marker}{escape(member['title'] or member['url'])}", "", _date(member["published_at"]), duplicate)
        table.add_section()
    console.print(table)


def main() -> None:
    """Entry point of the `newswatch` script."""
    import atexit
    import sys

    status = {"code": 0}

    def leave_quietly() -> None:
        # Registered before Prefect's own exit handlers, so it runs after them (its temporary
        # server is stopped by then). Skipping interpreter teardown keeps DuckDB's bindings from
        # printing reference-leak reports about objects Prefect's worker threads still hold.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status["code"])

    atexit.register(leave_quietly)
    try:
        app()
    except SystemExit as exit_:
        status["code"] = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        raise
    except BaseException:
        status["code"] = 1
        raise


if __name__ == "__main__":
    main()
