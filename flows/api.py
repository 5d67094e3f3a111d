"""The read-only HTTP API (`newswatch api`): stories, search, watches and their alerts, feeds, digests, exports, Atom feeds.

Every request reads the database read-only through the named queries of `warehouse/` (the ones
the command line and the dashboard use). Requests share one read-only attachment of the file,
which is let go half a second after the last one, or at once when a run waits for it
(`warehouse.connection.share_reads`), so the API runs beside the pipeline's writer: while a run
holds the file, or waits for it, a request waits up to `NEWSWATCH_API_LOCK_WAIT_SECONDS`, then
answers 503 with `Retry-After`. Nothing here writes: searches read the full-text index as the
runs left it and keep the vector index in memory.

Errors are one line of JSON (`{"detail": "..."}`) with a 4xx status for bad requests, 401 for a
missing or wrong token, 404 for what does not exist, 503 while the database cannot be read; never
a traceback. With `NEWSWATCH_API_TOKEN` set, every endpoint but `/health` asks for it
(`Authorization: Bearer TOKEN`, or HTTP Basic with the token as password, for feed readers).
"""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParameter
from fastapi import Query as QueryParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from extract import atom
from extract.embed import EmbeddingModelError
from extract.notify import mask_url
from extract.query import MAX_QUERY_CHARACTERS, QueryError, parse_query
from extract.search_index import SearchIndexError
from flows.digest import PeriodError, UnknownWatch, parse_since, read_digest
from flows.search import MAX_SELECTED_ARTICLES
from flows.settings import Settings
from warehouse.connection import WarehouseBusy, WarehouseError, open_warehouse, share_reads
from warehouse.exports import MEDIA_TYPES, article_export_table, write_article_export
from warehouse.feeds import attention_reasons, list_feeds
from warehouse.queries import stories_of_articles, story_articles, story_page
from warehouse.watches import (
    PAYLOAD_ARTICLES,
    alerted_stories,
    delivery_health,
    find_watch,
    matched_story_ids,
    recent_alerts,
    watch_overviews,
)

logger = logging.getLogger(__name__)

# Page sizes and other bounds: every list a request can ask for has a ceiling.
DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_SEARCH_RESULTS = 1000
MAX_DIGEST_STORIES = 1000
DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 1_000_000
MAX_LANGUAGES = 20
EXPORT_SPOOL_BYTES = 16 * 1024 * 1024


class ApiError(Exception):
    """A request that cannot be answered with data: its status, one-line message and headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def is_loopback(host: str) -> bool:
    """Whether an address to listen on reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def token_accepted(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries the token: `Bearer TOKEN`, or Basic with TOKEN as the password.

    The comparison takes the same time wherever the two differ (`hmac.compare_digest`).
    """
    expected = token.encode("utf-8")
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        offered = credentials.encode("utf-8", "replace")
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        offered = decoded.partition(b":")[2]
    else:
        return False
    return hmac.compare_digest(offered, expected)


def parse_time(name: str, text: str | None, now: datetime) -> datetime | None:
    """A `since`/`until` parameter: a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time (UTC unless it says)."""
    if text is None or not text.strip():
        return None
    try:
        return parse_since(text, now)
    except PeriodError:
        raise ApiError(400, f"{name}={text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO 8601 date or time") from None


def encode_cursor(story: dict) -> str:
    """An opaque cursor after this story (its last seen time and id)."""
    raw = json.dumps([story["last_seen_at"].isoformat(), story["story_id"]]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """The (last_seen_at, story_id) of a cursor; 400 when it is not one this API gave."""
    if cursor is None:
        return None
    try:
        seen, story_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(seen)
        if moment.tzinfo is None or not isinstance(story_id, str):
            raise ValueError
        return moment, story_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "cursor is not one this API returned (use next_cursor of the previous page)") from None


def _masked_watch(overview) -> dict:
    watch = overview.watch
    return {
        "watch_id": watch.watch_id,
        "name": watch.name,
        "query": watch.query,
        "like_text": watch.like_text,
        "min_articles": watch.min_articles,
        "min_sources": watch.min_sources,
        "notify_urls": [mask_url(url) for url in watch.notify_urls],
        "created_at": watch.created_at,
        "matched_stories": overview.matched_stories,
        "last_matched_at": overview.last_matched_at,
        "last_story_id": overview.last_story_id,
        "last_headline": overview.last_headline,
        "alerts": overview.alerts,
        "deliveries": {"delivered": overview.delivered, "pending": overview.pending, "failed": overview.failed},
        "last_error": overview.last_error,
        "last_error_at": overview.last_error_at,
    }


def _article(member: dict) -> dict:
    """An article of a story as the API shows it (stored column names; `seen_at` and `source_name` as in the queries)."""
    return {key: member[key] for key in (
        "article_id", "title", "url", "published_at", "ingested_at", "seen_at", "language", "source_name", "feed_id",
        "duplicate_of", "duplicate_kind", "duplicate_similarity", "story_similarity",
    )}


def _story(story: dict, base: str) -> dict:
    return {**story, "links": {"self": f"{base}stories/{story['story_id']}"}}


def _listed_articles(members: list[dict]) -> tuple[list[atom.ListedArticle], int]:
    """The latest articles of a story for its feed entry, each duplicate saying what it duplicates."""
    titles = {member["article_id"]: member["title"] or member["url"] for member in members}
    shown = members[-PAYLOAD_ARTICLES:]
    listed = []
    for member in shown:
        note = None
        if member["duplicate_of"]:
            similarity = member["duplicate_similarity"]
            score = f" {similarity:.2f}" if isinstance(similarity, float) and math.isfinite(similarity) else ""
            note = f"{member['duplicate_kind']} duplicate{score} of: {titles.get(member['duplicate_of'], member['duplicate_of'])}"
        listed.append(atom.ListedArticle(member["title"] or "", member["url"], member["source_name"], member["seen_at"], note))
    return listed, len(members) - len(shown)


def _entry_links(story_id: str, members: list[dict], base: str) -> list[atom.Link]:
    links = []
    first_original = next((m for m in members if not m["duplicate_of"] and atom.is_web_url(m["url"])), None)
    if first_original is not None:
        links.append(atom.Link(first_original["url"], "alternate", "text/html", first_original["title"]))
    links.append(atom.Link(f"{base}stories/{story_id}", "alternate", "application/json", "the story in the newswatch API"))
    seen = {first_original["url"]} if first_original else set()
    for member in members:
        if atom.is_web_url(member["url"]) and member["url"] not in seen:
            seen.add(member["url"])
            links.append(atom.Link(member["url"], "related", "text/html", member["title"]))
    return links


def _summary(article_count: int, duplicate_count: int, sources: int) -> str:
    articles = "1 article" if article_count == 1 else f"{article_count} articles"
    from_sources = "1 source" if sources == 1 else f"{sources} sources"
    return f"{articles} from {from_sources}" + (f", {duplicate_count} of them duplicates" if duplicate_count else "")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def atom_response(request: Request, document: bytes) -> Response:
    """An Atom document with its ETag; 304 Not Modified to a reader that already has this very document."""
    etag = f'"{hashlib.sha256(document).hexdigest()[:32]}"'
    offered = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in offered:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(document, media_type=atom.MEDIA_TYPE, headers={"ETag": etag})

TimeParameter = Annotated[str | None, QueryParameter(max_length=64, description="A duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 date or time (UTC unless it says).")]
KeywordQuery = Annotated[str | None, QueryParameter(max_length=MAX_QUERY_CHARACTERS, description='A query in newswatch\'s query language: words, "exact phrases", AND, OR, NOT, parentheses.')]
WatchName = Annotated[str | None, QueryParameter(max_length=200, description="Only the stories this watch (name or id) has matched.")]
Languages = Annotated[list[str] | None, QueryParameter(max_length=MAX_LANGUAGES, description="Only stories with an article in this language (repeatable; empty for unknown).")]


def create_app(settings: Settings) -> FastAPI:
    """The API over the warehouse `settings.db`, asking for `settings.api_token` when one is set.

    Args:
        settings: The settings (database, memory limit, lock wait, token).

    Returns:
        A FastAPI application; serve it with uvicorn (`newswatch api`).
    """
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    retry_after = str(max(1, math.ceil(settings.api_lock_wait_seconds)))
    # Every read of the warehouse in this process, the searches' included, shares one DuckDB
    # instance: starting one per request cost 20-40 ms, more than most of the reads themselves.
    share_reads(settings.db, settings.duckdb_memory_limit)
    app = FastAPI(
        title="newswatch",
        version="1",
        summary="Read-only access to the stories, articles, watches, alerts, feeds and digests of a newswatch warehouse.",
        description="Times are ISO 8601 with their zone; field names are the warehouse's columns (docs/schema.md). "
                    "Errors are `{\"detail\": \"one line\"}`. See docs/api.md.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "header", "body")]
        name = location[0] if location else "request"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ").splitlines()[0]
        return JSONResponse({"detail": f"invalid parameter {name}: {message}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail).splitlines()[0]}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("the API failed on %s", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__}); see the server's log"}, status_code=500)

    def read(reader: Callable[..., Any], *arguments, lock_wait: float | None = None) -> Any:
        """`reader(connection, *arguments)` in one short read-only connection; 503 while it cannot be opened."""
        wait = settings.api_lock_wait_seconds if lock_wait is None else lock_wait
        try:
            with open_warehouse(settings.db, read_only=True, lock_wait=wait, memory_limit=settings.duckdb_memory_limit) as connection:
                try:
                    return reader(connection, *arguments)
                except duckdb.Error as error:
                    raise WarehouseError(f"database {settings.db}: {str(error).strip().splitlines()[0]}") from None
        except WarehouseBusy:
            raise ApiError(503, "a newswatch run is writing to the database; try again shortly", {"Retry-After": retry_after}) from None
        except WarehouseError as error:
            raise ApiError(503, str(error)) from None

    def keyword_story_ids(q: str | None) -> set[str] | None:
        """Stories with an article matching a keyword query (None without a query), from the index as it stands."""
        if q is None:
            return None
        from flows.search import keyword_hits

        try:
            query = parse_query(q)
        except QueryError as error:
            raise ApiError(400, f"invalid query q={q!r}: {error}") from None
        try:
            hits = keyword_hits(settings.db, settings, query, since=None, limit=MAX_SELECTED_ARTICLES, sync=False)
        except SearchIndexError as error:
            raise ApiError(503, f"the search index cannot be used: {error}") from None
        ids = [article_id for article_id, _ in hits]
        return set(read(lambda connection: stories_of_articles(connection, ids)).values()) if ids else set()

    def check_token(request: Request) -> None:
        if token is not None and not token_accepted(request.headers.get("authorization"), token):
            raise ApiError(401, "this API needs its token: send `Authorization: Bearer TOKEN`",
                           {"WWW-Authenticate": 'Bearer realm="newswatch", Basic realm="newswatch"'})

    @app.get("/health", tags=["service"])
    def health() -> JSONResponse:
        """Whether the API is up and can read its database ("busy" while a run holds it); never asks for the token."""
        try:
            read(lambda connection: None, lock_wait=0)
        except ApiError as error:
            if error.status == 503 and "Retry-After" in error.headers:
                return JSONResponse({"status": "ok", "database": "busy"})
            return JSONResponse({"status": "unavailable", "database": "unreadable" if settings.db.exists() else "missing"},
                                status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    router = APIRouter(dependencies=[Depends(check_token)])

    def stories_for(since, until, q, watch, min_articles, min_sources, language, limit, cursor, now) -> list[dict]:
        start, end = parse_time("since", since, now), parse_time("until", until, now)
        after = decode_cursor(cursor)
        selected = keyword_story_ids(q)

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
            listed, more = _listed_articles(own)
            entries.append(atom.Entry(
                id=atom.story_entry_id(story["story_id"]), title=story["headline"] or "(untitled)",
                updated=story["last_ingested_at"], published=story["first_ingested_at"],
                summary=_summary(story["article_count"], story["duplicate_count"], story["source_count"]),
                links=_entry_links(story["story_id"], own, base), articles=listed, articles_not_listed=more,
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
        return {"story": _story(found, str(request.base_url)), "articles": [_article(member) for member in members]}

    @router.get("/search", tags=["stories"])
    def search(
        q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY_CHARACTERS, description="A keyword query, or with semantic=true a description.")],
        semantic: bool = False,
        since: TimeParameter = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_SEARCH_RESULTS)] = 20,
    ) -> dict:
        """Articles matching a keyword query (BM25), or nearest in meaning, grouped by story as `newswatch search` prints them."""
        from flows import search as searching

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
            raise ApiError(503, "a newswatch run is writing to the database; try again shortly", {"Retry-After": retry_after}) from None
        except (WarehouseError, SearchIndexError, EmbeddingModelError) as error:
            raise ApiError(503, str(error).strip().splitlines()[0]) from None
        groups = searching.group_by_story(results)
        score = "similarity" if semantic else "score"
        return {
            "q": q,
            "semantic": semantic,
            "article_count": len(results),
            "stories": [
                {
                    "story_id": group[0].article["story_id"],
                    "headline": group[0].article["story_headline"],
                    "articles": [{**_article(result.article), score: result.score} for result in group],
                }
                for group in groups
            ],
        }

    @router.get("/watches", tags=["watches"])
    def watches() -> dict:
        """Every watch: what it looks for, its matches, alerts and delivery health (notification URLs masked)."""
        overviews, health = read(lambda connection: (watch_overviews(connection), delivery_health(connection)))
        if health.get("last_failure"):
            health = {**health, "last_failure": {**health["last_failure"], "url": mask_url(health["last_failure"]["url"])}}
        return {"watches": [_masked_watch(overview) for overview in overviews], "deliveries": health}

    def find(connection, name: str):
        found = find_watch(connection, name)
        if found is None:
            raise ApiError(404, f"no watch {name}")
        return found

    @router.get("/watches/{name}/alerts", tags=["watches"])
    def watch_alerts(
        name: Annotated[str, PathParameter(max_length=200)],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> dict:
        """A watch's latest alerts, newest first, with their story and deliveries (URLs masked)."""

        def reader(connection):
            found = find(connection, name)
            return found, recent_alerts(connection, found.watch_id, limit)

        found, alerts = read(reader)
        for alert in alerts:
            alert["deliveries"] = [{**delivery, "url": mask_url(delivery["url"])} for delivery in alert["deliveries"]]
        return {"watch_id": found.watch_id, "name": found.name, "alerts": alerts}

    @router.get("/watches/{name}.atom", tags=["feeds"], response_class=Response,
                responses={200: {"content": {"application/atom+xml": {}}}})
    def watch_feed(
        request: Request,
        name: Annotated[str, PathParameter(max_length=200)],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> Response:
        """A watch as an Atom feed: one entry per story it alerted on, updated when the story alerts again as developing."""

        def reader(connection):
            found = find(connection, name)
            stories = alerted_stories(connection, found.watch_id, limit)
            members = story_articles(connection, [story["story_id"] for story in stories], details=True)
            return found, stories, members

        found, stories, members = read(reader)
        base = str(request.base_url)
        entries = []
        for story in stories:
            own = [m for m in members if m["story_id"] == story["story_id"]]
            listed, more = _listed_articles(own)
            sources = len({m["source_name"] for m in own})
            entries.append(atom.Entry(
                id=atom.story_entry_id(story["story_id"]), title=story["headline"] or "(untitled)",
                updated=story["last_alerted_at"], published=story["first_alerted_at"],
                summary=f"{story['last_kind']}: " + _summary(story["article_count"], story["duplicate_count"], sources),
                links=_entry_links(story["story_id"], own, base), categories=[story["last_kind"]],
                articles=listed, articles_not_listed=more,
            ))
        looks_for = f"query {found.query}" if found.query is not None else f"like: {found.like_text}"
        feed = atom.Feed(
            id=f"urn:newswatch:watch:{found.watch_id}", title=f"newswatch watch: {found.name}",
            updated=max((entry.updated for entry in entries), default=found.created_at),
            links=[atom.Link(str(request.url), "self", "application/atom+xml"),
                   atom.Link(f"{base}watches/{found.watch_id}/alerts", "alternate", "application/json")],
            subtitle=f"Stories the watch alerted on ({looks_for})", entries=entries,
        )
        return atom_response(request, atom.render_feed(feed))

    @router.get("/feeds", tags=["service"])
    def feeds() -> dict:
        """Every feed's health: last status and error, failures in a row, next poll, last new item, and why it needs attention."""
        records = read(list_feeds)
        now = datetime.now(UTC)
        silent_after = timedelta(days=settings.silent_feed_days)
        return {"feeds": [{**asdict(feed), "attention": attention_reasons(feed, now, silent_after)} for feed in records]}

    @router.get("/digest", tags=["stories"], responses={200: {"content": {"text/markdown": {}, "text/html": {}}}})
    def digest(
        since: TimeParameter = "24h",
        until: TimeParameter = None,
        watch: WatchName = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=MAX_DIGEST_STORIES)] = None,
        format: Annotated[str, QueryParameter(pattern="^(json|markdown|html)$")] = "json",
    ):
        """The top stories of a period, ranked by growth, then size (as `newswatch digest`); JSON, Markdown or HTML."""
        from extract.digest import render_digest

        now = datetime.now(UTC)
        start = parse_time("since", since, now) or now - timedelta(hours=24)
        end = parse_time("until", until, now) or now
        if end <= start:
            raise ApiError(400, "until must be after since")

        def reader(connection):
            try:
                return read_digest(connection, start, end, watch=watch, limit=limit or settings.digest_stories)
            except UnknownWatch as error:
                raise ApiError(404, str(error)) from None

        built = read(reader)
        if format == "markdown":
            return PlainTextResponse(render_digest(built, "markdown"), media_type="text/markdown; charset=utf-8")
        if format == "html":
            return HTMLResponse(render_digest(built, "html"))
        return built

    @router.get("/export", tags=["stories"], response_class=StreamingResponse,
                responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}})
    def export(
        format: Annotated[str, QueryParameter(pattern="^(csv|jsonl|parquet)$")] = "csv",
        since: TimeParameter = None,
        q: KeywordQuery = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_EXPORT_ROWS)] = DEFAULT_EXPORT_ROWS,
    ) -> StreamingResponse:
        """Articles with their story, duplicate link, source, language and dates (oldest seen first), as `newswatch export`."""
        start = parse_time("since", since, datetime.now(UTC))
        article_ids = None
        if q is not None:
            from flows.search import keyword_hits

            try:
                query = parse_query(q)
            except QueryError as error:
                raise ApiError(400, f"invalid query q={q!r}: {error}") from None
            try:
                article_ids = [hit for hit, _ in keyword_hits(settings.db, settings, query, since=start,
                                                               limit=MAX_SELECTED_ARTICLES, sync=False)]
            except SearchIndexError as error:
                raise ApiError(503, f"the search index cannot be used: {error}") from None
        table = read(lambda connection: article_export_table(connection, since=start, article_ids=article_ids, limit=limit))
        # Written after the connection is closed, into memory or a temporary file, then streamed.
        spool = tempfile.SpooledTemporaryFile(max_size=EXPORT_SPOOL_BYTES)
        write_article_export(table, format, spool)
        spool.seek(0)

        def chunks():
            try:
                while block := spool.read(1 << 16):
                    yield block
            finally:
                spool.close()

        filename = f"newswatch-articles.{format}"
        return StreamingResponse(chunks(), media_type=MEDIA_TYPES[format],
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    app.include_router(router)
    return app

