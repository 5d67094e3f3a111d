"""What each dashboard page reads: named warehouse queries, combined into one short read per page.

Each reader takes an open read-only connection and plain, hashable arguments, fetches everything
its page needs and returns plain data, so `dashboards.snapshot.load` can cache it and close the
connection at once. The concurrency test calls these same functions beside a running writer.
"""

from datetime import datetime

import duckdb

from warehouse.feeds import list_feeds
from warehouse.queries import (
    article_facets,
    article_vectors,
    articles_by_id,
    feed_article_counts,
    list_stories,
    recent_fetch_failures,
    search_articles,
    story_articles,
    story_timelines,
)
from warehouse.runs import recent_runs

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


def read_keyword_search(connection: duckdb.DuckDBPyConnection, terms: tuple[str, ...], limit: int) -> list[dict]:
    """Articles containing every term, best first."""
    return search_articles(connection, list(terms), limit)


def read_vectors(connection: duckdb.DuckDBPyConnection, model: str) -> tuple[list[str], object]:
    """Every article's stored vector of this model."""
    return article_vectors(connection, model)


def read_articles(connection: duckdb.DuckDBPyConnection, article_ids: tuple[str, ...]) -> dict[str, dict]:
    """These articles with text and story headline."""
    return articles_by_id(connection, list(article_ids))
