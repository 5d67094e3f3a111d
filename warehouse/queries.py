"""Named read queries for people: what the command line and the dashboard show.

(What the pipeline itself reads while it decides a batch is in `warehouse.lookups`.) Every
query binds its parameters; none is built from user strings.
"""

from datetime import datetime

import duckdb

from warehouse.sql import execute


# Who published an article: the page's site name, else its feed's name, else the web host, else
# where it came from (`fixtures` for files). Needs `articles a LEFT JOIN feeds f`.
_SOURCE_NAME = (
    "coalesce(nullif(a.site_name, ''), nullif(f.name, ''),"
    r" nullif(regexp_extract(a.canonical_url, '^[a-z]+://(?:www\.)?([^/:?#]+)', 1), ''), a.source)"
)
# When an article was seen: its publish time, else when it was ingested.
_SEEN_AT = "coalesce(a.published_at, a.ingested_at)"

STORY_COLUMNS = ("story_id", "headline", "article_count", "duplicate_count", "first_published_at", "last_published_at")
STORY_DETAIL_COLUMNS = ("original_count", "first_seen_at", "last_seen_at", "recent_count", "sources")
STORY_ORDERS = ("recent", "growth")


def list_stories(
    connection: duckdb.DuckDBPyConnection,
    limit: int = 50,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    feed_ids: list[str] | None = None,
    languages: list[str] | None = None,
    story_ids: list[str] | None = None,
    order: str = "recent",
    growing_since: datetime | None = None,
    details: bool = False,
) -> list[dict]:
    """The most recently active stories, largest first among equals.

    A filter keeps a story when at least one of its articles passes all filters; the counts are
    always those of the whole story. An article is seen at its publish time, else when ingested.

    Args:
        connection: An open warehouse connection.
        limit: How many stories.
        since: Only stories with an article seen at or after this time.
        until: Only stories with an article seen before this time.
        feed_ids: Only stories with an article from one of these feeds ("" for articles from files).
        languages: Only stories with an article in one of these languages ("" for unknown).
        story_ids: Only these stories.
        order: "recent" (latest published, else ingested, first) or "growth" (most articles seen
            since `growing_since` first, then as "recent").
        growing_since: Start of the window that `recent_count` counts.
        details: Also return `original_count`, `first_seen_at`, `last_seen_at`, `recent_count`
            and `sources` (the sorted distinct source names).

    Returns:
        One dict per story with the keys of `STORY_COLUMNS` (and `STORY_DETAIL_COLUMNS`).
    """
    if order not in STORY_ORDERS:
        raise ValueError(f"unknown story order {order!r}; expected one of {', '.join(STORY_ORDERS)}")
    rows = execute(
        connection,
        f"""
        WITH members AS (
            SELECT a.story_id, {_SEEN_AT} AS seen_at, coalesce(a.feed_id, '') AS feed_key,
                   coalesce(a.language, '') AS language_key, {_SOURCE_NAME} AS source_name
            FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
        ),
        matching AS (
            SELECT DISTINCT story_id FROM members
            WHERE (?::TIMESTAMPTZ IS NULL OR seen_at >= ?::TIMESTAMPTZ)
              AND (?::TIMESTAMPTZ IS NULL OR seen_at < ?::TIMESTAMPTZ)
              AND (?::VARCHAR[] IS NULL OR feed_key IN (SELECT unnest(?::VARCHAR[])))
              AND (?::VARCHAR[] IS NULL OR language_key IN (SELECT unnest(?::VARCHAR[])))
              AND (?::VARCHAR[] IS NULL OR story_id IN (SELECT unnest(?::VARCHAR[])))
        ),
        activity AS (
            SELECT story_id, min(seen_at) AS first_seen_at, max(seen_at) AS last_seen_at,
                   count(*) FILTER (WHERE seen_at >= ?::TIMESTAMPTZ) AS recent_count,
                   list(DISTINCT source_name ORDER BY source_name) AS sources
            FROM members WHERE story_id IN (SELECT story_id FROM matching) GROUP BY story_id
        )
        SELECT {", ".join(f"s.{column}" for column in STORY_COLUMNS)},
               s.original_count, t.first_seen_at, t.last_seen_at, t.recent_count, t.sources
        FROM stories s JOIN activity t USING (story_id)
        ORDER BY CASE WHEN ? THEN t.recent_count ELSE 0 END DESC,
                 coalesce(s.last_published_at, s.last_ingested_at) DESC, s.article_count DESC, s.story_id
        LIMIT ?
        """,
        [
            since, since, until, until, feed_ids, feed_ids, languages, languages, story_ids, story_ids,
            growing_since, order == "growth", limit,
        ],
    )
    columns = STORY_COLUMNS + STORY_DETAIL_COLUMNS
    width = len(columns) if details else len(STORY_COLUMNS)
    return [dict(zip(columns[:width], row[:width])) for row in rows]


ARTICLE_COLUMNS = (
    "article_id", "story_id", "title", "url", "published_at", "duplicate_of", "duplicate_kind",
    "duplicate_similarity", "story_similarity",
)
ARTICLE_DETAIL_COLUMNS = ("ingested_at", "seen_at", "language", "source_name", "feed_id")


def story_articles(
    connection: duckdb.DuckDBPyConnection, story_ids: list[str], *, details: bool = False
) -> list[dict]:
    """The members of these stories, oldest first.

    Args:
        connection: An open warehouse connection.
        story_ids: The stories.
        details: Also return the keys of `ARTICLE_DETAIL_COLUMNS` (`source_name` as in `list_stories`).
    """
    columns = ARTICLE_COLUMNS + (ARTICLE_DETAIL_COLUMNS if details else ())
    rows = execute(
        connection,
        f"""
        SELECT {", ".join(f"a.{column}" for column in ARTICLE_COLUMNS)},
               a.ingested_at, {_SEEN_AT} AS seen_at, a.language, {_SOURCE_NAME} AS source_name, a.feed_id
        FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
        WHERE a.story_id IN (SELECT unnest(?))
        ORDER BY a.story_id, {_SEEN_AT}, a.url
        """,
        [story_ids],
    )
    return [dict(zip(columns, row[: len(columns)])) for row in rows]


ARTICLE_TEXT_COLUMNS = ARTICLE_COLUMNS + ARTICLE_DETAIL_COLUMNS + ("story_headline", "text")


def articles_by_id(connection: duckdb.DuckDBPyConnection, article_ids: list[str]) -> dict[str, dict]:
    """These articles with their text and their story's headline, keyed by article_id.

    Returns:
        Dicts with the keys of `ARTICLE_TEXT_COLUMNS`; ids not stored are left out.
    """
    rows = execute(
        connection,
        f"""
        SELECT {", ".join(f"a.{column}" for column in ARTICLE_COLUMNS)},
               a.ingested_at, {_SEEN_AT} AS seen_at, a.language, {_SOURCE_NAME} AS source_name, a.feed_id, a.text
        FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
        WHERE a.article_id IN (SELECT unnest(?))
        """,
        [article_ids],
    )
    # The headlines of these articles' stories alone, read apart: joining the `stories` view made
    # DuckDB work out every story's headline first (1.8 s for 20 articles out of 1,000,000).
    story_ids = sorted({row[1] for row in rows})
    headlines = dict(execute(
        connection, "SELECT story_id, headline FROM stories WHERE story_id IN (SELECT unnest(?::VARCHAR[]))", [story_ids]
    )) if rows else {}
    return {row[0]: dict(zip(ARTICLE_TEXT_COLUMNS, (*row[:-1], headlines[row[1]], row[-1]))) for row in rows}


TIME_BUCKETS = ("hour", "day", "week")


def _check_bucket(bucket: str) -> None:
    if bucket not in TIME_BUCKETS:
        raise ValueError(f"unknown time bucket {bucket!r}; expected one of {', '.join(TIME_BUCKETS)}")


def story_timelines(
    connection: duckdb.DuckDBPyConnection,
    story_ids: list[str],
    bucket: str = "day",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, list[tuple[datetime, int]]]:
    """How many articles of each story were seen per hour, day or week (UTC), oldest bucket first.

    Args:
        connection: An open warehouse connection.
        story_ids: The stories.
        bucket: "hour", "day" or "week".
        since: Leave out articles seen before this time.
        until: Leave out articles seen at or after this time.

    Returns:
        story_id → (bucket start, article count) for the buckets that have articles.
    """
    _check_bucket(bucket)
    rows = execute(
        connection,
        f"""
        SELECT a.story_id, date_trunc(?, {_SEEN_AT}) AS bucket_start, count(*)
        FROM articles a
        WHERE a.story_id IN (SELECT unnest(?))
          AND (?::TIMESTAMPTZ IS NULL OR {_SEEN_AT} >= ?::TIMESTAMPTZ)
          AND (?::TIMESTAMPTZ IS NULL OR {_SEEN_AT} < ?::TIMESTAMPTZ)
        GROUP BY ALL ORDER BY ALL
        """,
        [bucket, story_ids, since, since, until, until],
    )
    timelines: dict[str, list[tuple[datetime, int]]] = {}
    for story_id, bucket_start, count in rows:
        timelines.setdefault(story_id, []).append((bucket_start, count))
    return timelines


def article_facets(connection: duckdb.DuckDBPyConnection) -> dict:
    """What the stored articles can be filtered by, with counts.

    Returns:
        `{"article_count", "first_seen_at", "last_seen_at", "feeds": [{"feed_id", "name",
        "article_count"}], "languages": [{"language", "article_count"}]}`; `feed_id` is "" for
        articles from files (`name` is then their source) and `language` "" when unknown.
    """
    article_count, first_seen_at, last_seen_at = execute(
        connection, f"SELECT count(*), min({_SEEN_AT}), max({_SEEN_AT}) FROM articles a"
    )[0]
    feeds = execute(
        connection,
        """
        SELECT coalesce(a.feed_id, '') AS feed_key,
               CASE WHEN a.feed_id IS NULL THEN 'no feed (' || a.source || ')'
                    ELSE coalesce(nullif(f.name, ''), f.url, a.feed_id) END AS name,
               count(*)
        FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
        GROUP BY ALL ORDER BY name, feed_key
        """,
    )
    languages = execute(
        connection,
        "SELECT coalesce(language, '') AS language_key, count(*) FROM articles GROUP BY ALL ORDER BY count(*) DESC, language_key",
    )
    # Files of several sources share the feed key "": merge them into one entry.
    merged: dict[str, dict] = {}
    for feed_key, name, count in feeds:
        entry = merged.setdefault(feed_key, {"feed_id": feed_key, "name": name, "article_count": 0})
        entry["article_count"] += count
        if feed_key == "" and entry["name"] != name:
            entry["name"] = "no feed (files)"
    return {
        "article_count": article_count,
        "first_seen_at": first_seen_at,
        "last_seen_at": last_seen_at,
        "feeds": list(merged.values()),
        "languages": [{"language": language, "article_count": count} for language, count in languages],
    }


def feed_article_counts(
    connection: duckdb.DuckDBPyConnection, bucket: str = "day", *, since: datetime | None = None
) -> list[dict]:
    """New articles per feed per hour, day or week (UTC) of ingestion, oldest first.

    Articles that came from files count under "no feed (<source>)".

    Returns:
        Dicts with `feed_id` ("" for files), `feed` (its name, else URL), `bucket_start`, `article_count`.
    """
    _check_bucket(bucket)
    rows = execute(
        connection,
        """
        SELECT coalesce(a.feed_id, '') AS feed_key,
               CASE WHEN a.feed_id IS NULL THEN 'no feed (' || a.source || ')'
                    ELSE coalesce(nullif(f.name, ''), f.url, a.feed_id) END AS feed,
               date_trunc(?, a.ingested_at) AS bucket_start, count(*)
        FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
        WHERE ?::TIMESTAMPTZ IS NULL OR a.ingested_at >= ?::TIMESTAMPTZ
        GROUP BY ALL ORDER BY bucket_start, feed
        """,
        [bucket, since, since],
    )
    return [
        {"feed_id": feed_key, "feed": feed, "bucket_start": bucket_start, "article_count": count}
        for feed_key, feed, bucket_start, count in rows
    ]


def recent_fetch_failures(connection: duckdb.DuckDBPyConnection, limit: int = 20) -> list[dict]:
    """The latest failed feed and page fetches, newest first, with their feed's name when known."""
    columns = ("failed_at", "feed", "url", "status", "error")
    rows = execute(
        connection,
        """
        SELECT x.failed_at, coalesce(nullif(f.name, ''), f.url, x.feed_id), x.url, x.status, x.error
        FROM fetch_failures x LEFT JOIN feeds f ON f.feed_id = x.feed_id
        ORDER BY x.failed_at DESC, x.url
        LIMIT ?
        """,
        [limit],
    )
    return [dict(zip(columns, row)) for row in rows]


def delivery_problems(connection: duckdb.DuckDBPyConnection) -> dict:
    """Alert deliveries given up for good, and those that failed and wait for another attempt.

    A delivery keeps its last error after it is delivered at a later attempt; only the failed and
    the retrying ones are counted here.

    Returns:
        `{"failed": {...}, "retrying": {...}}`, each `{"count": int, "latest": None or {"url", "error",
        "at"}}` with the most recently attempted delivery of that status; `url` as stored, in clear
        (mask it before showing it), `error` as stored (masked when it was recorded).
    """
    rows = execute(
        connection,
        """
        SELECT kind, count(*), arg_max(url, last_attempt_at), arg_max(last_error, last_attempt_at), max(last_attempt_at)
        FROM (
            SELECT CASE WHEN status = 'failed' THEN 'failed' ELSE 'retrying' END AS kind, url, last_error, last_attempt_at
            FROM alert_deliveries
            WHERE status = 'failed' OR (status = 'pending' AND last_error IS NOT NULL)
        )
        GROUP BY kind
        """,
    )
    found = {kind: (number, url, error, at) for kind, number, url, error, at in rows}
    problems = {}
    for kind in ("failed", "retrying"):
        number, url, error, at = found.get(kind, (0, None, None, None))
        problems[kind] = {"count": number, "latest": {"url": url, "error": error, "at": at} if number else None}
    return problems


STORY_PAGE_COLUMNS = (
    "story_id", "headline", "article_count", "original_count", "duplicate_count", "source_count", "sources",
    "languages", "first_published_at", "last_published_at", "first_ingested_at", "last_ingested_at",
    "first_seen_at", "last_seen_at",
)


def story_page(
    connection: duckdb.DuckDBPyConnection,
    limit: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    languages: list[str] | None = None,
    story_ids: list[str] | None = None,
    min_articles: int = 1,
    min_sources: int = 1,
    after: tuple[datetime, str] | None = None,
) -> list[dict]:
    """One page of stories, latest seen first, for readers that page with a cursor (the HTTP API, its feeds).

    The order is (`last_seen_at`, `story_id`) descending, a total order that a new article can
    only move a story up in, so a cursor of the last row read continues where a page ended.
    Filters keep a story when one of its articles passes the time and language filters; sizes
    are those of the whole story.

    Args:
        connection: An open warehouse connection.
        limit: How many stories.
        since: Only stories with an article seen at or after this time.
        until: Only stories with an article seen before this time.
        languages: Only stories with an article in one of these languages ("" for unknown).
        story_ids: Only these stories.
        min_articles: Only stories of at least this many articles (duplicates included).
        min_sources: Only stories from at least this many distinct sources.
        after: (last_seen_at, story_id) of the last story of the previous page.

    Returns:
        One dict per story with the keys of `STORY_PAGE_COLUMNS`.
    """
    after_seen, after_id = after if after is not None else (None, None)
    # The page's stories are chosen first, from the columns that filter and order them; headlines,
    # sources and languages are then read for those stories alone. Working them out for every
    # story to show fifty cost a whole aggregation of the table per page (140-210 ms at 100,000
    # articles, against 20 ms). Sources are counted for every story only when `min_sources` asks.
    # A few stories asked for by id, with no other filter, need no choosing (`GET /stories/{id}`).
    unfiltered = since is None and until is None and languages is None and after is None and min_articles <= 1
    if story_ids is not None and unfiltered and min_sources <= 1 and len(story_ids) <= limit:
        return _story_details(connection, list(story_ids), limit)
    by_sources = min_sources > 1
    page = execute(
        connection,
        f"""
        SELECT a.story_id
        FROM articles a {"LEFT JOIN feeds f ON f.feed_id = a.feed_id" if by_sources else ""}
        WHERE ?::VARCHAR[] IS NULL OR a.story_id IN (SELECT unnest(?::VARCHAR[]))
        GROUP BY a.story_id
        HAVING bool_or((?::TIMESTAMPTZ IS NULL OR {_SEEN_AT} >= ?::TIMESTAMPTZ)
                       AND (?::TIMESTAMPTZ IS NULL OR {_SEEN_AT} < ?::TIMESTAMPTZ)
                       AND (?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], coalesce(a.language, ''))))
           AND count(*) >= ?
           AND {f"count(DISTINCT {_SOURCE_NAME})" if by_sources else "1"} >= ?
           AND (?::TIMESTAMPTZ IS NULL OR max({_SEEN_AT}) < ?::TIMESTAMPTZ
                OR (max({_SEEN_AT}) = ?::TIMESTAMPTZ AND a.story_id < ?::VARCHAR))
        ORDER BY max({_SEEN_AT}) DESC, a.story_id DESC
        LIMIT ?
        """,
        [
            story_ids, story_ids, since, since, until, until, languages, languages,
            min_articles, min_sources, after_seen, after_seen, after_seen, after_id, limit,
        ],
    )
    return _story_details(connection, [row[0] for row in page], limit) if page else []


def _story_details(connection: duckdb.DuckDBPyConnection, story_ids: list[str], limit: int) -> list[dict]:
    """The `STORY_PAGE_COLUMNS` of these stories (those stored), latest seen first."""
    rows = execute(
        connection,
        f"""
        WITH members AS (
            SELECT a.story_id, {_SEEN_AT} AS seen_at, coalesce(a.language, '') AS language_key,
                   {_SOURCE_NAME} AS source_name
            FROM articles a LEFT JOIN feeds f ON f.feed_id = a.feed_id
            WHERE a.story_id IN (SELECT unnest(?::VARCHAR[]))
        ),
        activity AS (
            SELECT story_id, min(seen_at) AS first_seen_at, max(seen_at) AS last_seen_at,
                   list(DISTINCT source_name ORDER BY source_name) AS sources,
                   list(DISTINCT language_key ORDER BY language_key) FILTER (WHERE language_key <> '') AS languages
            FROM members GROUP BY story_id
        )
        SELECT s.story_id, s.headline, s.article_count, s.original_count, s.duplicate_count, len(t.sources),
               t.sources, coalesce(t.languages, []), s.first_published_at, s.last_published_at,
               s.first_ingested_at, s.last_ingested_at, t.first_seen_at, t.last_seen_at
        FROM stories s JOIN activity t USING (story_id)
        WHERE s.story_id IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY t.last_seen_at DESC, s.story_id DESC
        LIMIT ?
        """,
        [story_ids, story_ids, limit],
    )
    return [dict(zip(STORY_PAGE_COLUMNS, row)) for row in rows]


def stories_of_articles(connection: duckdb.DuckDBPyConnection, article_ids: list[str]) -> dict[str, str]:
    """article_id → story_id of these articles (ids not stored are left out)."""
    rows = execute(connection, "SELECT article_id, story_id FROM articles WHERE article_id IN (SELECT unnest(?::VARCHAR[]))",
                   [article_ids])
    return dict(rows)
