"""The service commands: `serve`, `deploy` and `status`, and the checks of their schedule options."""

import os
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.commands.common import (
    DbOption,
    check_embed_device,
    check_model,
    command_settings,
    console,
    fail,
    reported_errors,
    short_date,
)
from flows.commands.database import open_database
from flows.service import prefect_home
from flows.settings import check_cron_expressions
from reading.feeds import needing_attention
from warehouse.feeds import list_feeds

IntervalOption = Annotated[
    float | None,
    typer.Option("--interval", min=1, help="Seconds between feed runs (default: $NEWSWATCH_SERVE_INTERVAL_SECONDS, 900)."),
]
CronOption = Annotated[str | None, typer.Option("--cron", help="Cron expression for feed runs instead of an interval.")]


def service_settings(db, interval, cron):
    """The settings with `--interval` or `--cron` applied, their cron expressions checked; else one line and exit 2."""
    if interval is not None and cron is not None:
        fail("give --interval or --cron, not both")
    settings = command_settings(db=db, serve_interval_seconds=interval, serve_cron=cron)
    check_embed_device(settings)
    if interval is not None:
        settings = settings.model_copy(update={"serve_cron": None})
    try:
        check_cron_expressions(settings)
    except ValueError as error:
        fail(str(error))
    return settings


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
        os.environ["PREFECT_API_URL"] = own_server_api_url(command_settings(db=db))
    settings = service_settings(db, interval, cron)
    check_model(settings)
    if api:
        from flows.api import is_loopback

        if not is_loopback(settings.api_host) and settings.api_token is None:
            fail(f"serving the API on {settings.api_host}, not a loopback address, needs a token: set NEWSWATCH_API_TOKEN")
    with open_database(settings):
        pass  # create or upgrade it now: a bad path fails here, not in the first scheduled run
    with reported_errors():
        serve_until_stopped(settings, own_server=own_server, started=started, say=console.print, api=api)


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
    settings = service_settings(db, interval, cron)
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


def status(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs to show.")] = 10,
    check: Annotated[bool, typer.Option("--check", help="Only check that the service is up, its Prefect UI included (exit 0), or not (exit 1).")] = False,
) -> None:
    """Show the last runs, the next scheduled runs and the feeds needing attention.

    Example: newswatch status --db newswatch.duckdb
    """
    from datetime import UTC, datetime

    from flows.service import api_is_healthy, read_state
    from warehouse.runs import recent_runs

    settings = command_settings(db=db)
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
    from monitoring.notification_urls import mask_url
    from warehouse.watches import delivery_health

    with open_database(settings, read_only=True) as connection:
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
            console.print(f"Next {name}: {short_date(when)} UTC (in {max(0, (when - now).total_seconds()):.0f} s)")
        if not upcoming:
            console.print("Next runs: none scheduled")
    table = Table(title=f"Last {len(runs)} runs in {settings.db}", expand=True)
    for column in ("Started", "Flow", "Status", "Seconds", "Feeds", "304", "New", "Dups", "Stories", "Errors", "Note"):
        table.add_column(column, overflow="fold")
    for record in runs:
        seconds = (record.finished_at - record.started_at).total_seconds() if record.finished_at else None
        colour = {"completed": "green", "running": "cyan"}.get(record.status, "red")
        table.add_row(
            short_date(record.started_at), record.flow, f"[{colour}]{record.status}[/]",
            "—" if seconds is None else f"{seconds:.1f}", str(record.feeds_polled), str(record.not_modified),
            str(record.new_articles), str(record.duplicates), str(record.new_stories), str(record.errors),
            escape(record.message or ""),
        )
    console.print(table if runs else "No runs yet.")
    attention = needing_attention(feeds, now, settings.silent_feed_days)
    if attention:
        console.print(f"{len(attention)} of {len(feeds)} feeds need attention:")
        for health in attention:
            console.print(f"  {escape(health.feed.name or health.feed.url)}: {escape('; '.join(health.attention))}")
    else:
        console.print(f"All {len(feeds)} feeds are healthy.")
    if any(deliveries[status] for status in ("delivered", "pending", "failed")):
        line = (f"Alert deliveries: {deliveries['delivered']} delivered, {deliveries['pending']} pending, "
                f"{deliveries['failed']} failed")
        last = deliveries["last_failure"]
        if last:
            line += f"; last failure {short_date(last['at'])} to {mask_url(last['url'])}: {last['error']}"
        console.print(escape(line))
