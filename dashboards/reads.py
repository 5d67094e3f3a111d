"""What each dashboard page reads: named warehouse queries, combined into one short read per page.

Each reader takes an open read-only connection and plain, hashable arguments, fetches everything
its page needs and returns plain data, so `dashboards.snapshot.load` can cache it and close the
connection at once. The concurrency test calls these same functions beside a running writer.

Searches read the indexes beside the warehouse too, through `reading.search` as the command line
and the API do, never writing them: the full-text index is only opened for searching, and the
vector index is kept in this process's memory and brought up to date there (the ingest runs keep
both up to date on disk).
"""

from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import duckdb

from extract.query import parse_query
from extract.search_index import SearchIndexError
from reading.search import VectorIndexSettings, has_search_index, keyword_search, semantic_search
from warehouse.feeds import list_feeds
from warehouse.queries import (
    article_facets,
    articles_by_id,
    delivery_problems,
    feed_article_counts,
    list_stories,
    recent_fetch_failures,
    story_articles,
    story_timelines,
)
from warehouse.runs import recent_runs
from warehouse.watches import delivery_health, recent_alerts, watch_overviews

STORY_CHOICES = 200


def read_facets(connection: duckdb.DuckDBPyConnection) -> dict:
    """The date span, feeds and languages the stories can be filtered by."""
    return article_facets(connection)


def read_stories(
    connection: duckdb.DuckDBPyConnection,
    since: datetime,
    until: datetime,
    feed_ids: tuple[str, ...] | None,
    languages: tuple[str, ...] | None,
    order: str,
    growing_since: datetime,
    bucket: str,
    limit: int,
) -> dict:
    """The stories active in [since, until) under these filters, and their timelines there.

    Returns:
        `{"stories": [...], "timelines": {story_id: [(bucket start, count)]}}`.
    """
    stories = list_stories(
        connection, limit, since=since, until=until,
        feed_ids=None if feed_ids is None else list(feed_ids),
        languages=None if languages is None else list(languages),
        order=order, growing_since=growing_since, details=True,
    )
    timelines = story_timelines(connection, [story["story_id"] for story in stories], bucket, since=since, until=until)
    return {"stories": stories, "timelines": timelines}


def read_story(connection: duckdb.DuckDBPyConnection, story_id: str | None) -> dict:
    """One story in full: its articles, the texts of its duplicates and their originals.

    Args:
        connection: An open warehouse connection.
        story_id: The story; None (or an unknown id) for the most recently active one.

    Returns:
        `{"choices": [(story_id, headline)] of recent stories (the requested one included),
        "story": dict or None, "articles": [...], "texts": {article_id: dict}}`.
    """
    choices = [(story["story_id"], story["headline"]) for story in list_stories(connection, STORY_CHOICES)]
    found = list_stories(connection, 1, story_ids=[story_id], details=True) if story_id else []
    if not found and choices:
        found = list_stories(connection, 1, story_ids=[choices[0][0]], details=True)
    if not found:
        return {"choices": choices, "story": None, "articles": [], "texts": {}}
    story = found[0]
    if story["story_id"] not in {choice[0] for choice in choices}:
        choices.append((story["story_id"], story["headline"]))
    articles = story_articles(connection, [story["story_id"]], details=True)
    pairs = {article["article_id"] for article in articles if article["duplicate_of"]}
    pairs |= {article["duplicate_of"] for article in articles if article["duplicate_of"]}
    return {"choices": choices, "story": story, "articles": articles, "texts": articles_by_id(connection, sorted(pairs))}


def read_feeds(connection: duckdb.DuckDBPyConnection, bucket: str, since: datetime, failure_limit: int) -> dict:
    """Every feed's health, new articles per feed since `since`, and the latest fetch failures."""
    return {
        "feeds": list_feeds(connection),
        "counts": feed_article_counts(connection, bucket, since=since),
        "failures": recent_fetch_failures(connection, failure_limit),
    }


def read_runs(connection: duckdb.DuckDBPyConnection, limit: int) -> list:
    """The latest runs, newest first."""
    return recent_runs(connection, limit)


def read_keyword_search(
    connection: duckdb.DuckDBPyConnection, db: Path, query: str, since: datetime | None, limit: int
) -> dict:
    """The articles of the warehouse's full-text index that match a keyword query, best first (`reading.search`).

    The index is only opened for searching (it takes its writer only on a change), never brought
    up to date here: each ingest run does that.

    Args:
        connection: An open read-only warehouse connection.
        db: The warehouse file (the index lives beside it).
        query: The query as typed; it parses (`extract.query.parse_query`), the page checked.
        since: Only articles seen at or after this time.
        limit: How many articles at most.

    Returns:
        `{"index": "missing" | "unusable" | "ok", "message": str | None, "results": [SearchResult]}`.
    """
    if not has_search_index(db):
        return {"index": "missing", "message": None, "results": []}
    try:
        results = keyword_search(lambda: nullcontext(connection), db, parse_query(query), since=since, limit=limit)
    except SearchIndexError as error:
        return {"index": "unusable", "message": str(error), "results": []}
    return {"index": "ok", "message": None, "results": results}


def read_semantic_search(
    connection: duckdb.DuckDBPyConnection,
    db: Path,
    index: VectorIndexSettings,
    query_vector: tuple[float, ...],
    since: datetime | None,
    limit: int,
) -> dict:
    """The stored articles nearest in meaning to a query vector, most similar first (`reading.search`).

    The vector index beside the warehouse is loaded from disk once and brought up to date with
    the `articles` table in memory only: the ingest runs save it.

    Args:
        connection: An open read-only warehouse connection.
        db: The warehouse file (the index lives beside it).
        index: Which vector index (`reading.search.VectorIndexSettings.of` the settings).
        query_vector: The query's unit vector, embedded with that model.
        since: Only articles seen at or after this time.
        limit: How many articles at most.

    Returns:
        `{"vectors": how many articles the index holds, "results": [SearchResult]}`, each result
        with its (approximate) cosine similarity to the query.
    """
    results, vectors = semantic_search(lambda: nullcontext(connection), db, index, query_vector, since=since, limit=limit)
    return {"vectors": vectors, "results": results}


def read_watches(connection: duckdb.DuckDBPyConnection, watch_id: int | None, alert_limit: int) -> dict:
    """Every watch with its matches and delivery health, and the latest alerts (of one watch, or of all).

    Args:
        connection: An open warehouse connection.
        watch_id: Only this watch's alerts; None, or an id no watch has, for everyone's.
        alert_limit: How many alerts at most.

    Returns:
        `{"watches": [WatchOverview], "health": delivery_health(...), "problems":
        delivery_problems(...), "watch_id": the watch whose alerts these are (None: all),
        "alerts": recent_alerts(...)}`.
    """
    overviews = watch_overviews(connection)
    if watch_id not in {overview.watch.watch_id for overview in overviews}:
        watch_id = None
    return {
        "watches": overviews,
        "health": delivery_health(connection),
        "problems": delivery_problems(connection),
        "watch_id": watch_id,
        "alerts": recent_alerts(connection, watch_id, alert_limit),
    }
