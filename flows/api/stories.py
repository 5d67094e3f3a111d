"""The routes of stories: a page of stories, a saved search as an Atom feed, one story, and article search."""

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParameter
from fastapi import Query as QueryParameter
from fastapi.responses import Response

from extract import atom
from extract.embed import EmbeddingModelError
from extract.query import MAX_QUERY_CHARACTERS, QueryError, parse_query
from extract.search_index import SearchIndexError
from flows import search as searching
from flows.api.atom_entries import EPOCH, atom_response, entry_links, listed_articles, story_summary
from flows.api.errors import ApiError
from flows.api.parameters import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_SEARCH_RESULTS,
    KeywordQuery,
    Languages,
    TimeParameter,
    WatchName,
    decode_cursor,
    encode_cursor,
    parse_time,
)
from flows.api.reads import WarehouseReads
from reading.search import group_by_story
from warehouse.connection import WarehouseBusy, WarehouseError
from warehouse.queries import story_articles, story_page
from warehouse.watches import find_watch, matched_story_ids


def article_fields(member: dict) -> dict:
    """An article of a story as the API shows it (stored column names; `seen_at` and `source_name` as in the queries)."""
    return {key: member[key] for key in (
        "article_id", "title", "url", "published_at", "ingested_at", "seen_at", "language", "source_name", "feed_id",
        "duplicate_of", "duplicate_kind", "duplicate_similarity", "story_similarity",
    )}


def _story(story: dict, base: str) -> dict:
    return {**story, "links": {"self": f"{base}stories/{story['story_id']}"}}


def story_routes(read: WarehouseReads) -> APIRouter:
    """`/stories`, `/stories.atom`, `/stories/{story_id}` and `/search`, reading through `read`."""
    settings = read.settings
    router = APIRouter()

    def stories_for(since, until, q, watch, min_articles, min_sources, language, limit, cursor, now) -> list[dict]:
        start, end = parse_time("since", since, now), parse_time("until", until, now)
        after = decode_cursor(cursor)
        selected = read.keyword_story_ids(q)

        def reader(connection):
            story_ids = None if selected is None else sorted(selected)
            if watch is not None:
                found = find_watch(connection, watch)
                if found is None:
                    raise ApiError(404, f"no watch {watch}")
                matched = matched_story_ids(connection, found.watch_id)
                story_ids = sorted(set(matched) if story_ids is None else set(matched) & set(story_ids))
            if story_ids == []:
                return []
            return story_page(connection, limit, since=start, until=end, languages=language, story_ids=story_ids,
                              min_articles=min_articles, min_sources=min_sources, after=after)

        return read(reader)

    @router.get("/stories", tags=["stories"])
    def stories(
        request: Request,
        since: TimeParameter = None,
        until: TimeParameter = None,
        q: KeywordQuery = None,
        watch: WatchName = None,
        min_articles: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        min_sources: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        language: Languages = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        cursor: Annotated[str | None, QueryParameter(max_length=200, description="next_cursor of the previous page.")] = None,
    ) -> dict:
        """Stories active in the period (latest seen first), filtered; page on with `next_cursor`."""
        found = stories_for(since, until, q, watch, min_articles, min_sources, language, limit + 1, cursor, datetime.now(UTC))
        page, more = found[:limit], len(found) > limit
        next_cursor = encode_cursor(page[-1]) if more else None
        base = str(request.base_url)
        return {
            "stories": [_story(story, base) for story in page],
            "next_cursor": next_cursor,
            "next": str(request.url.include_query_params(cursor=next_cursor)) if next_cursor else None,
        }

    @router.get("/stories.atom", tags=["feeds"], response_class=Response,
                responses={200: {"content": {"application/atom+xml": {}}}})
    def stories_feed(
        request: Request,
        q: KeywordQuery = None,
        since: TimeParameter = None,
        until: TimeParameter = None,
        watch: WatchName = None,
        min_articles: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        min_sources: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        language: Languages = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> Response:
        """A saved search as an Atom feed: one entry per story, updated when the story grows."""
        found = stories_for(since, until, q, watch, min_articles, min_sources, language, limit, None, datetime.now(UTC))
        members = read(lambda connection: story_articles(connection, [s["story_id"] for s in found], details=True)) if found else []
        base = str(request.base_url)
        entries = []
        for story in found:
            own = [m for m in members if m["story_id"] == story["story_id"]]
            listed, more = listed_articles(own)
            entries.append(atom.Entry(
                id=atom.story_entry_id(story["story_id"]), title=story["headline"] or "(untitled)",
                updated=story["last_ingested_at"], published=story["first_ingested_at"],
                summary=story_summary(story["article_count"], story["duplicate_count"], story["source_count"]),
                links=entry_links(story["story_id"], own, base), articles=listed, articles_not_listed=more,
            ))
        # The feed's id is that of the search: the same parameters give the same feed.
        search = sorted((key, value) for key, value in request.query_params.multi_items() if key != "limit")
        digest = hashlib.sha256(json.dumps(search).encode("utf-8")).hexdigest()[:16]
        title = f"newswatch: {q}" if q else "newswatch: stories"
        feed = atom.Feed(
            id=f"urn:newswatch:search:{digest}", title=title,
            updated=max((entry.updated for entry in entries), default=EPOCH),
            links=[atom.Link(str(request.url), "self", "application/atom+xml"),
                   atom.Link(str(request.url.replace(path=request.url.path.removesuffix(".atom"))), "alternate", "application/json")],
            subtitle="Stories matching a saved search, one entry per story", entries=entries,
        )
        return atom_response(request, atom.render_feed(feed))

    @router.get("/stories/{story_id}", tags=["stories"])
    def story(request: Request, story_id: Annotated[str, PathParameter(max_length=64)]) -> dict:
        """One story with all its articles; a duplicate names its kind, its similarity and the article it duplicates."""

        def reader(connection):
            found = story_page(connection, 1, story_ids=[story_id])
            return (found[0], story_articles(connection, [story_id], details=True)) if found else (None, [])

        found, members = read(reader)
        if found is None:
            raise ApiError(404, f"no story {story_id}")
        return {"story": _story(found, str(request.base_url)), "articles": [article_fields(member) for member in members]}

    @router.get("/search", tags=["stories"])
    def search(
        q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY_CHARACTERS, description="A keyword query, or with semantic=true a description.")],
        semantic: bool = False,
        since: TimeParameter = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
    ) -> dict:
        """Articles matching a keyword query (BM25), or nearest in meaning, grouped by story as `newswatch search` prints them."""
        start = parse_time("since", since, datetime.now(UTC))
        if not q.strip():
            raise ApiError(400, "invalid parameter q: an empty query")
        if not semantic:
            try:
                parse_query(q)
            except QueryError as error:
                raise ApiError(400, f"invalid query q={q!r}: {error}") from None
        read(lambda connection: None)  # a missing, busy or unusable database answers here
        try:
            results = searching.search(settings.db, settings, q, semantic=semantic, since=start, limit=limit, sync=False,
                                       lock_wait=settings.api_lock_wait_seconds)
        except WarehouseBusy:
            raise read.busy() from None
        except (WarehouseError, SearchIndexError, EmbeddingModelError) as error:
            raise ApiError(503, str(error).strip().splitlines()[0]) from None
        groups = group_by_story(results)
        score = "similarity" if semantic else "score"
        return {
            "q": q,
            "semantic": semantic,
            "article_count": len(results),
            "stories": [
                {
                    "story_id": group[0].article["story_id"],
                    "headline": group[0].article["story_headline"],
                    "articles": [{**article_fields(result.article), score: result.score} for result in group],
                }
                for group in groups
            ],
        }

    return router
