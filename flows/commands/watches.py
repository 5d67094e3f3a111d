"""The watch commands: `add-watch`, `remove-watch`, `watches` and `test-watch`."""

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flows.commands.common import (
    DbOption,
    check_embed_device,
    check_model,
    checked_notify_urls,
    checked_query,
    command_settings,
    console,
    fail,
    reported_errors,
    search_index_errors,
    short_date,
)
from flows.commands.database import open_database


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

    from monitoring.notification_urls import mask_url
    from warehouse.sql import transaction
    from warehouse.watches import add_watch

    settings = command_settings(db=db)
    name = " ".join(name.split())
    if not name:
        fail("a watch needs a name")
    if (query is None) == (like is None):
        fail("give --query or --like (one of them)")
    if query is not None:
        checked_query(query)
    if like is not None and not like.strip():
        fail("--like needs a description of the event")
    urls = checked_notify_urls(notify or [], settings)
    vector = model = None
    if like is not None:
        check_embed_device(settings)
        check_model(settings)
        from flows.embedding import embedding_model_key, get_embedder

        with reported_errors():
            vector = get_embedder(settings).embed([like.strip()])[0][0]
        model = embedding_model_key(settings)
    with open_database(settings) as connection, transaction(connection):
        watch_id = add_watch(
            connection, name, query=query, like_text=like.strip() if like is not None else None, like_vector=vector,
            like_model=model, min_articles=min_articles, min_sources=min_sources, notify_urls=urls, now=datetime.now(UTC),
        )
    if watch_id is None:
        fail(f"a watch named {name!r} exists already (see `newswatch watches`)")
    targets = ", ".join(mask_url(url) for url in urls) or "nobody (alerts are stored only)"
    console.print(escape(f"added watch {watch_id} {name!r}: alerts {targets} from the next run"))


def remove_watch_command(
    watch: Annotated[str, typer.Argument(help="Watch name or id (see `newswatch watches`).")],
    db: DbOption = None,
) -> None:
    """Stop a watch; its matches, alerts and pending deliveries go with it.

    Example: newswatch remove-watch musk-gaza
    """
    from warehouse.sql import transaction
    from warehouse.watches import find_watch, remove_watch

    settings = command_settings(db=db)
    with open_database(settings) as connection, transaction(connection):
        found = find_watch(connection, watch)
        if found is not None:
            remove_watch(connection, found.watch_id)
    if found is None:
        fail(f"no watch {watch}")
    console.print(escape(f"removed watch {found.watch_id} {found.name!r}"))


def _looks_for(watch) -> str:
    return f"query {watch.query}" if watch.query is not None else f"like: {watch.like_text}"


def watches_command(db: DbOption = None) -> None:
    """List the watches: what each looks for, its last match, its alerts and the health of their deliveries.

    Notification URLs are shown with their secrets masked.

    Example: newswatch watches --db newswatch.duckdb
    """
    from monitoring.notification_urls import mask_url
    from warehouse.watches import watch_overviews

    settings = command_settings(db=db)
    with open_database(settings, read_only=True) as connection:
        overviews = watch_overviews(connection)
    if not overviews:
        console.print("No watches yet: add one with `newswatch add-watch NAME --query QUERY`.")
        return
    table = Table(title=f"{len(overviews)} watches in {settings.db}", expand=True)
    for column in ("Id", "Watch", "Looks for", "Alerts when", "Notifies", "Last match", "Alerts", "Deliveries"):
        table.add_column(column, overflow="fold")
    for item in overviews:
        watch = item.watch
        last = f"{short_date(item.last_matched_at)} {item.last_headline or ''}".strip() if item.last_matched_at else "—"
        health = f"{item.delivered} delivered, {item.pending} pending, {item.failed} failed"
        if item.last_error:
            health += f"\nlast error {short_date(item.last_error_at)}: {item.last_error}"
        table.add_row(
            str(watch.watch_id), escape(watch.name), escape(_looks_for(watch)),
            f"≥ {watch.min_articles} articles, ≥ {watch.min_sources} sources",
            escape("\n".join(mask_url(url) for url in watch.notify_urls) or "—"),
            escape(last) + (f"\n[dim]{item.matched_stories} stories matched[/dim]" if item.matched_stories else ""),
            str(item.alerts),
            f"[{'red' if item.failed else 'yellow' if item.pending else 'green'}]{escape(health)}[/]",
        )
    console.print(table)


def test_watch_command(
    watch: Annotated[str, typer.Argument(help="Watch name or id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many stories to show.")] = 20,
    db: DbOption = None,
) -> None:
    """Show which stored stories a watch matches now, and which of them would alert; nothing is sent or stored.

    Example: newswatch test-watch musk-gaza
    """
    from flows import search
    from monitoring.policy import meets_thresholds
    from warehouse.queries import list_stories
    from warehouse.watches import find_watch

    settings = command_settings(db=db)
    with open_database(settings, read_only=True) as connection:
        found = find_watch(connection, watch)
    if found is None:
        fail(f"no watch {watch}")
    with reported_errors(), search_index_errors():
        if found.query is not None:
            hits = search.keyword_hits(settings.db, settings, checked_query(found.query), since=None, limit=10_000)
        else:
            check_model(settings)
            hits = [(article_id, similarity) for article_id, similarity in
                    search.semantic_hits(settings.db, settings, found.like_text, limit=max(200, 20 * limit))
                    if similarity >= settings.watch_like_threshold]
    matched: dict[str, int] = {}
    with open_database(settings, read_only=True) as connection:
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
        alerts = meets_thresholds(story["article_count"], len(story["sources"]), found.min_articles, found.min_sources)
        table.add_row(
            escape(story["headline"] or "(untitled)"), str(story["article_count"]), str(len(story["sources"])),
            str(matched[story["story_id"]]), short_date(story["last_seen_at"]), "[green]yes[/]" if alerts else "no (too small)",
        )
    console.print(table)
