"""What every `newswatch` command shares: the console, the options, one-line errors and the checks before work."""

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from extract.embed import EmbeddingModelError
from flows.feed_list import FeedFileError
from flows.service import ServiceError
from flows.settings import load_settings, settings_error_message
from warehouse.connection import WarehouseError

# Wide enough for a readable table when printing to a file or pipe.
console = Console(width=None if Console().is_terminal else 140)

DbOption = Annotated[
    Path | None, typer.Option("--db", help="DuckDB file (default: $NEWSWATCH_DB, else ./newswatch.duckdb).")
]
WhenOption = Annotated[
    str | None,
    typer.Option("--since", help="Only articles seen since: a duration back from now (30m, 24h, 7d, 2w) or an ISO date (2026-12-01)."),
]

# Errors whose message is already one sentence for the user: reported as such, exit 2.
REPORTED_ERRORS = (WarehouseError, EmbeddingModelError, FeedFileError, ServiceError)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def fail(message: str) -> None:
    """Print one line to stderr and exit 2."""
    typer.echo(f"newswatch: error: {message}", err=True)
    raise typer.Exit(2)


def print_or_write(text: str, output: Path | None, written: str, *, newline: bool = True) -> None:
    """Print `text`, or write it to `output` and say so (`written`, e.g. "3 feeds", is shown as plain text).

    One line and exit 2 when the file cannot be written.
    """
    if output is None:
        typer.echo(text, nl=newline)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    console.print(f"wrote {written} to {output}", markup=False, highlight=False)


def command_settings(**overrides):
    """The settings with a command's options applied; one line and exit 2 when they are invalid."""
    try:
        return load_settings(**overrides)
    except ValidationError as error:
        fail(settings_error_message(error))


@contextmanager
def reported_errors():
    """One line and exit 2 for an error the library states in one sentence."""
    try:
        yield
    except REPORTED_ERRORS as error:
        fail(str(error))


def check_model(settings) -> None:
    """Fail in one line when the embedding model cannot be found (files only: the model is not loaded)."""
    from extract.embed import check_model

    try:
        check_model(settings.model)
    except EmbeddingModelError as error:
        fail(f"{error} (NEWSWATCH_MODEL)")


def check_embed_device(settings) -> None:
    """Fail in one line when the settings ask for a GPU that torch does not see."""
    if settings.embed_device.startswith("cuda"):
        from extract.embed import EmbeddingDeviceError, resolve_device

        try:
            resolve_device(settings.embed_device)
        except EmbeddingDeviceError as error:
            fail(f"{error} (NEWSWATCH_EMBED_DEVICE)")


def short_date(value) -> str:
    """A timestamp to the minute, or a dash."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def period_start(text: str | None):
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
def search_index_errors():
    """One line and exit 2 when the search index cannot be used or rebuilt (its folder holds other files)."""
    from extract.search_index import SearchIndexError

    try:
        yield
    except SearchIndexError as error:
        fail(str(error))


def checked_query(text: str):
    """The parsed keyword query; one line and exit 2 when it does not parse."""
    from extract.query import QueryError, parse_query

    try:
        return parse_query(text)
    except QueryError as error:
        fail(f"invalid query {text!r}: {error}")


def checked_notify_urls(urls: list[str], settings) -> list[str]:
    """The notification URLs, each known to Apprise and allowed by the SSRF guard; else one line and exit 2."""
    from monitoring.guard import guard_url
    from monitoring.notification_urls import NotifyError, check_url

    # Apprise logs its own parse errors ("Unparseable URL ..."); once Prefect is imported (as by
    # `digest`) they would reach its console handler beside our one line. They still reach
    # monitoring.masking's filter on the logger, which words the error.
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
