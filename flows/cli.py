"""The `newswatch` command line."""

import os

# Set before Prefect and transformers are imported: no telemetry, no hub access, quiet loading.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.settings import load_settings
from warehouse.connection import WarehouseError, open_warehouse
from warehouse.feeds import list_feeds
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


def fail(message: str) -> None:
    """Print one line to stderr and exit 2."""
    typer.echo(f"newswatch: error: {message}", err=True)
    raise typer.Exit(2)


def _settings(**overrides):
    try:
        return load_settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"invalid setting NEWSWATCH_{str(first['loc'][0]).upper()}: {first['msg']}")


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
    if fixtures is not None and not fixtures.exists():
        fail(f"fixture folder {fixtures} does not exist")
    if fixtures is not None and not fixtures.is_dir():
        fail(f"fixture path {fixtures} is not a folder")
    from datetime import UTC, datetime

    from flows.pipeline import FeedFileError, import_feed_file

    try:
        if fixtures is None and settings.feeds_file is not None:
            import_feed_file(settings.feeds_file, settings.db, datetime.now(UTC))
        with open_warehouse(settings.db) as connection:
            feed_count = len(list_feeds(connection))
    except (WarehouseError, FeedFileError) as error:
        fail(str(error))
    if fixtures is None and not feed_count:
        fail("no feeds to poll: add one with `newswatch add-feed URL`, or pass --fixtures DIR")

    from flows.ingest import ingest_feeds, ingest_fixtures
    from flows.pipeline import get_embedder

    # Load the model while Prefect starts its server: both take seconds.
    threading.Thread(target=get_embedder(settings).load, daemon=True).start()
    try:
        if fixtures is not None:
            summary = ingest_fixtures(fixtures.resolve(), settings.db, settings)
        else:
            summary = ingest_feeds(settings.db, settings)
    except WarehouseError as error:
        fail(str(error))
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
    else:
        console.print(
            f"read {summary.read} files, skipped {len(summary.skipped)}, already stored {summary.already_stored}, "
            f"new articles {summary.new_articles} ({summary.duplicates} duplicates), new stories {summary.new_stories}"
        )
    _print_clusters(settings.db)


@app.command()
def clusters(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many stories to show.")] = 20,
) -> None:
    """Print the most recent stories with their articles, marking duplicates.

    Example: newswatch clusters --db newswatch.duckdb --limit 10
    """
    settings = _settings(db=db)
    _print_clusters(settings.db, limit)


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
    if not settings.db.exists():
        fail(f"database {settings.db} does not exist yet: run `newswatch run` first")
    try:
        summary = reextract_pages(settings.db, settings, everything=everything)
    except WarehouseError as error:
        fail(str(error))
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
    try:
        with open_warehouse(settings.db) as connection:
            added = add_feed(connection, url, name, datetime.now(UTC))
    except WarehouseError as error:
        fail(str(error))
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
    try:
        with open_warehouse(settings.db) as connection:
            removed = remove_feed(connection, feed)
    except WarehouseError as error:
        fail(str(error))
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

    from flows.pipeline import FeedFileError, import_feed_file

    settings = _settings(db=db)
    try:
        listed, added = import_feed_file(file, settings.db, datetime.now(UTC))
    except (FeedFileError, WarehouseError) as error:
        fail(str(error))
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
    try:
        with open_warehouse(settings.db, read_only=True) as connection:
            feeds = list_feeds(connection)
    except WarehouseError as error:
        fail(str(error))
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
    try:
        with open_warehouse(settings.db, read_only=True) as connection:
            feeds = list_feeds(connection)
    except WarehouseError as error:
        fail(str(error))
    if not feeds:
        console.print("No feeds yet: add one with `newswatch add-feed URL`.")
        return
    now = datetime.now(UTC)
    silent_after = timedelta(days=settings.silent_feed_days)
    table = Table(title=f"{len(feeds)} feeds in {settings.db}", expand=True)
    for column in ("Feed", "Status", "Last success", "Failures", "Next poll", "Last new item", "Attention"):
        table.add_column(column, overflow="fold")
    for feed in feeds:
        attention = []
        if feed.consecutive_failures:
            attention.append(f"[red]failing: {escape(feed.last_error or '')}[/red]")
        reference = feed.last_new_item_at or feed.added_at
        if feed.last_success_at and now - reference > silent_after:
            attention.append("[yellow]silent[/yellow]")
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


@app.command()
def dashboard(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Serve the read-only stories dashboard on 127.0.0.1.

    Example: newswatch dashboard --db newswatch.duckdb --port 8501
    """
    import subprocess
    import sys

    import dashboards

    settings = _settings(db=db)
    app_path = Path(dashboards.__file__).parent / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--", "--db", str(settings.db),
    ]
    console.print(f"Dashboard on http://127.0.0.1:{port} (Ctrl+C stops it)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _date(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "—"


def _print_clusters(db: Path, limit: int = 20) -> None:
    try:
        with open_warehouse(db, read_only=True) as connection:
            stories = list_stories(connection, limit)
            members = story_articles(connection, [story["story_id"] for story in stories])
    except WarehouseError as error:
        fail(str(error))
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


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def main() -> None:
    """Entry point of the `newswatch` script."""
    app()


if __name__ == "__main__":
    main()
