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
        Path | None, typer.Option("--fixtures", help="Folder of article files (*.txt, *.html) to ingest.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Ingest articles, link duplicates, assign stories and load DuckDB, then print the stories.

    Example: newswatch run --fixtures tests/fixtures/seeds --db newswatch.duckdb
    """
    settings = _settings(db=db)
    if fixtures is None:
        fail("nothing to ingest: pass --fixtures DIR")
    if not fixtures.exists():
        fail(f"fixture folder {fixtures} does not exist")
    if not fixtures.is_dir():
        fail(f"fixture path {fixtures} is not a folder")
    try:
        with open_warehouse(settings.db):
            pass
    except WarehouseError as error:
        fail(str(error))

    from flows.ingest import ingest_fixtures
    from flows.pipeline import get_embedder

    # Load the model while Prefect starts its server: both take seconds.
    threading.Thread(target=get_embedder(settings).load, daemon=True).start()
    try:
        summary = ingest_fixtures(fixtures.resolve(), settings.db, settings)
    except WarehouseError as error:
        fail(str(error))
    for skip in summary.skipped:
        typer.echo(f"warning: skipped {skip.path}: {skip.reason}", err=True)
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
