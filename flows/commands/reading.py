"""The commands that read the stored stories and articles: `clusters`, `search`, `digest` and `export`."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.commands.common import (
    DbOption,
    WhenOption,
    check_embed_device,
    check_model,
    checked_notify_urls,
    checked_query,
    command_settings,
    console,
    fail,
    period_start,
    print_or_write,
    reported_errors,
    search_index_errors,
    short_date,
)
from flows.commands.database import open_database
from warehouse.queries import list_stories, story_articles


def stories_command(
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many stories to show.")] = 20,
) -> None:
    """Print the most recent stories with their articles, marking duplicates.

    Example: newswatch stories --db newswatch.duckdb --limit 10
    """
    settings = command_settings(db=db)
    print_stories(settings, limit)


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
    from reading.search import group_by_story

    settings = command_settings(db=db)
    start = period_start(since)
    if not semantic:
        checked_query(query)
    else:
        check_embed_device(settings)
        check_model(settings)
    with open_database(settings, read_only=True):
        pass  # a missing or unusable database is one line
    with reported_errors(), search_index_errors():
        results = search.search(settings.db, settings, query, semantic=semantic, since=start, limit=limit)
    if not results:
        console.print("No article matches." if not semantic else "No stored article has a vector of this model yet.")
        return
    groups = group_by_story(results)
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
                f"    [dim]{escape(article['source_name'] or '')} · seen {short_date(article['seen_at'])} · "
                f"{score} {result.score:.3g}{escape(duplicate)} · {escape(article['url'])}[/dim]"
            )


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

    from monitoring.delivery import deliver
    from monitoring.digest import FORMATS, digest_message, render_digest
    from monitoring.notification_urls import mask_url
    from flows.digest import UnknownWatch, build_digest

    settings = command_settings(db=db)
    if format not in FORMATS:
        fail(f"unknown format {format!r}: expected {', '.join(FORMATS)}")
    start = period_start(since)
    urls = checked_notify_urls(notify or [], settings)
    with open_database(settings, read_only=True):
        pass
    try:
        with reported_errors():
            digest = build_digest(settings.db, settings, start, datetime.now(UTC), watch=watch,
                                  limit=limit or settings.digest_stories)
    except UnknownWatch as error:
        fail(str(error))
    text = render_digest(digest, format)
    print_or_write(text, output, f"a digest of {len(digest['stories'])} stories", newline=False)
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

    settings = command_settings(db=db)
    if format not in EXPORT_FORMATS:
        fail(f"unknown format {format!r}: expected {', '.join(EXPORT_FORMATS)}")
    if output is None and format == "parquet" and sys.stdout.isatty():
        fail("Parquet is binary: give -o FILE (or redirect standard output)")
    if output is not None and output.is_dir():
        fail(f"cannot write {output}: it is a folder")
    start = period_start(since)
    article_ids = None
    if query is not None:
        from flows import search
        from reading.search import MAX_SELECTED_ARTICLES

        parsed = checked_query(query)
        with open_database(settings, read_only=True):
            pass  # a missing or unusable database is one line
        with reported_errors(), search_index_errors():
            article_ids = [article_id for article_id, _ in
                           search.keyword_hits(settings.db, settings, parsed, since=start, limit=MAX_SELECTED_ARTICLES)]
    with open_database(settings, read_only=True) as connection:
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


def print_stories(settings, limit: int = 20) -> None:
    db = settings.db
    with open_database(settings, read_only=True) as connection:
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
        dates = short_date(story["first_published_at"])
        if story["last_published_at"] != story["first_published_at"]:
            dates += f" → {short_date(story['last_published_at'])}"
        table.add_row(f"[bold]{escape(story['headline'] or '(untitled)')}[/bold]", size, dates, "")
        for member in (m for m in members if m["story_id"] == story["story_id"]):
            duplicate = ""
            if member["duplicate_of"]:
                original = titles.get(member["duplicate_of"], member["duplicate_of"])
                duplicate = f"[yellow]{member['duplicate_kind']} {member['duplicate_similarity']:.2f}: {escape(original)}[/yellow]"
            marker = "[yellow]⧉ DUPLICATE[/yellow] " if member["duplicate_of"] else ""
            table.add_row(f"  • {marker}{escape(member['title'] or member['url'])}", "", short_date(member["published_at"]), duplicate)
        table.add_section()
    console.print(table)
