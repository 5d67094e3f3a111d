"""The routes of whole documents: the digest of a period, and the articles exported as a file."""

import tempfile
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter
from fastapi import Query as QueryParameter
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse

from flows.api.errors import ApiError
from flows.api.parameters import (
    DEFAULT_EXPORT_ROWS,
    MAX_DIGEST_STORIES,
    MAX_EXPORT_ROWS,
    KeywordQuery,
    TimeParameter,
    WatchName,
    parse_time,
)
from flows.api.reads import WarehouseReads
from flows.digest import UnknownWatch, read_digest
from warehouse.exports import MEDIA_TYPES, article_export_table, write_article_export

EXPORT_SPOOL_BYTES = 16 * 1024 * 1024


def document_routes(read: WarehouseReads) -> APIRouter:
    """`/digest` and `/export`, reading through `read`."""
    settings = read.settings
    router = APIRouter()

    @router.get("/digest", tags=["stories"], responses={200: {"content": {"text/markdown": {}, "text/html": {}}}})
    def digest(
        since: TimeParameter = "24h",
        until: TimeParameter = None,
        watch: WatchName = None,
        limit: Annotated[int | None, QueryParameter(ge=1, le=MAX_DIGEST_STORIES)] = None,
        format: Annotated[str, QueryParameter(pattern="^(json|markdown|html)$")] = "json",
    ):
        """The top stories of a period, ranked by growth, then size (as `newswatch digest`); JSON, Markdown or HTML."""
        from monitoring.digest import render_digest

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
            article_ids = read.keyword_article_ids(q, start)
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

    return router
