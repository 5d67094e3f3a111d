"""The feed list commands: `add-feed`, `remove-feed`, `import-opml`, `export-opml` and `feeds`."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.commands.common import DbOption, command_settings, console, fail, print_or_write, reported_errors, short_date
from flows.commands.database import check_database, open_database
from flows.feed_list import import_feed_file
from reading.feeds import feed_health
from warehouse.feeds import list_feeds


def _feed_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"not an http(s) feed URL: {url}")
    return url.strip()


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

    settings = command_settings(db=db)
    url = _feed_url(url)
    with open_database(settings) as connection:
        added = add_feed(connection, url, name, datetime.now(UTC))
    console.print(f"added {url}" if added else f"already listed: {url}")


def remove_feed_command(
    feed: Annotated[str, typer.Argument(help="Feed URL or id (see `newswatch feeds`).")],
    db: DbOption = None,
) -> None:
    """Stop polling a feed; its articles stay.

    Example: newswatch remove-feed https://www.example.com/rss.xml
    """
    from warehouse.feeds import remove_feed

    settings = command_settings(db=db)
    with open_database(settings) as connection:
        removed = remove_feed(connection, feed)
    if not removed:
        fail(f"no feed {feed}")
    console.print(f"removed {feed}")


def import_opml_command(
    file: Annotated[Path, typer.Argument(help="OPML file exported by a feed reader.")],
    db: DbOption = None,
) -> None:
    """Add every feed listed in an OPML file.

    Example: newswatch import-opml subscriptions.opml
    """
    from datetime import UTC, datetime

    settings = command_settings(db=db)
    if file.exists() and not file.is_file() and not file.is_dir():  # reading a FIFO would hang
        fail(f"cannot read {file}: not a regular file")
    check_database(settings)
    with reported_errors():
        listed, added = import_feed_file(file, settings.db, datetime.now(UTC), settings)
    console.print(f"{listed} feeds in {file}: {added} added, {listed - added} already listed")


def export_opml_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")] = None,
    db: DbOption = None,
) -> None:
    """Write the feed list as OPML 2.0.

    Example: newswatch export-opml -o feeds.opml
    """
    from extract.opml import OpmlFeed, write_opml

    settings = command_settings(db=db)
    with open_database(settings, read_only=True) as connection:
        feeds = list_feeds(connection)
    document = write_opml([OpmlFeed(feed.url, feed.name) for feed in feeds])
    print_or_write(document, output, f"{len(feeds)} feeds")


def feeds_command(db: DbOption = None) -> None:
    """List the feeds and their health: last status, failures, next poll, silence.

    Example: newswatch feeds --db newswatch.duckdb
    """
    from datetime import UTC, datetime

    settings = command_settings(db=db)
    with open_database(settings, read_only=True) as connection:
        feeds = list_feeds(connection)
    if not feeds:
        console.print("No feeds yet: add one with `newswatch add-feed URL`.")
        return
    now = datetime.now(UTC)
    table = Table(title=f"{len(feeds)} feeds in {settings.db}", expand=True)
    for column in ("Feed", "Status", "Last success", "Failures", "Next poll", "Last new item", "Attention"):
        table.add_column(column, overflow="fold")
    for health in feed_health(feeds, now, settings.silent_feed_days):
        feed = health.feed
        attention = [f"[{'red' if reason.startswith('failing') else 'yellow'}]{escape(reason)}[/]" for reason in health.attention]
        table.add_row(
            escape(feed.name or feed.url) + (f"\n[dim]{escape(feed.url)}[/dim]" if feed.name else ""),
            "—" if feed.last_status is None else str(feed.last_status),
            short_date(feed.last_success_at),
            str(feed.consecutive_failures),
            short_date(feed.next_due_at),
            short_date(feed.last_new_item_at),
            " ".join(attention),
        )
    console.print(table)
