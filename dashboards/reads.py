"""What each dashboard page reads: named warehouse queries, combined into one short read per page.

Each reader takes an open read-only connection and plain, hashable arguments, fetches everything
its page needs and returns plain data, so `dashboards.snapshot.load` can cache it and close the
connection at once. The concurrency test calls these same functions beside a running writer.

Searches read the indexes beside the warehouse too, never writing them: the full-text index is
only opened for searching, and the vector index is kept in this process's memory and brought up
to date there (the ingest runs keep both up to date on disk).
"""

import threading
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np

from extract.query import parse_query
from extract.search_index import SearchIndex, SearchIndexError, read_state
from flows.search import SearchResult
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
from warehouse.vector_index import VectorIndex
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
    connection: duckdb.DuckDBPyConnection, folder: Path, query: str, since: datetime | None, limit: int
) -> dict:
    """The articles of the full-text index in `folder` that match a keyword query, best first.

    The index is only opened for searching (it takes its writer only on a change), never brought
    up to date here: each ingest run does that. Its hits are read from the warehouse in this
    connection, so an article the index still holds but the warehouse no longer does is left out.

    Args:
        connection: An open read-only warehouse connection.
        folder: The index folder (`flows.search.search_folder`).
        query: The query as typed; it parses (`extract.query.parse_query`), the page checked.
        since: Only articles seen at or after this time.
        limit: How many articles at most.

    Returns:
        `{"index": "missing" | "unusable" | "ok", "message": str | None, "results": [SearchResult]}`.
    """
    # A folder without its state file is no index yet; opening one would create it.
    if read_state(folder) is None:
        return {"index": "missing", "message": None, "results": []}
    try:
        with SearchIndex(folder) as index:
            hits = index.search(parse_query(query), limit=limit, since=since)
    except SearchIndexError as error:
        return {"index": "unusable", "message": str(error), "results": []}
    articles = articles_by_id(connection, [hit.article_id for hit in hits])
    results = [SearchResult(articles[hit.article_id], hit.score) for hit in hits if hit.article_id in articles]
    return {"index": "ok", "message": None, "results": results}


# One vector index per (database, model, settings), kept in memory between reads and brought up to
# date in each: loading it from disk for every query would read every vector each time.
_vector_indexes: dict[tuple, VectorIndex] = {}
_vector_lock = threading.Lock()


def read_semantic_search(
    connection: duckdb.DuckDBPyConnection,
    db: Path,
    model: str,
    query_vector: tuple[float, ...],
    exact_limit: int,
    search_depth: int,
    since: datetime | None,
    limit: int,
    fallback_model: str | None = None,
) -> dict:
    """The stored articles nearest in meaning to a query vector, most similar first.

    The vector index beside the warehouse (`warehouse.vector_index`) is loaded from disk once and
    synced with the `articles` table in memory only: the ingest runs save it.

    Args:
        connection: An open read-only warehouse connection.
        db: The warehouse file (the index lives beside it).
        model: The embedding key (`flows.embedding.embedding_model_key`).
        query_vector: The query's unit vector, embedded with that model.
        exact_limit: `Settings.vector_index_exact_limit`.
        search_depth: `Settings.vector_index_search_depth`.
        since: Only articles seen at or after this time.
        limit: How many articles at most.
        fallback_model: Vectors of texts without one of `model` (`flows.embedding.whole_model_key`).

    Returns:
        `{"vectors": how many articles the index holds, "results": [SearchResult]}`, each result
        with its (approximate) cosine similarity to the query.
    """
    key = (str(db), model, len(query_vector), exact_limit, search_depth, fallback_model)
    vector = np.asarray(query_vector, dtype=np.float32)[None, :]
    with _vector_lock:
        index = _vector_indexes.get(key)
        if index is None:
            index = VectorIndex(db, model, len(query_vector), exact_limit=exact_limit, search_depth=search_depth,
                                fallback_model=fallback_model)
            index.load()
        try:
            index.sync(connection)
        except BaseException:
            _vector_indexes.pop(key, None)  # half brought up to date: load it afresh next time
            raise
        _vector_indexes[key] = index
        # Over-fetch when filtering by time: the index knows no times.
        (found,) = index.search(vector, limit * 5 if since is not None else limit)
        vectors = len(index)
    ranked = sorted(found.items(), key=lambda item: -item[1])
    articles = articles_by_id(connection, [article_id for article_id, _ in ranked])
    results = [SearchResult(articles[article_id], score) for article_id, score in ranked if article_id in articles]
    if since is not None:
        results = [result for result in results if result.article["seen_at"] >= since]
    return {"vectors": vectors, "results": results[:limit]}


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
