"""How a request reads the warehouse: one short read-only connection, 503 while it cannot be opened."""

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb

from extract.query import QueryError, parse_query
from extract.search_index import SearchIndexError
from flows.api.errors import ApiError
from flows.settings import Settings
from reading.search import MAX_SELECTED_ARTICLES, keyword_hits
from warehouse.connection import WarehouseBusy, WarehouseError, open_warehouse
from warehouse.queries import stories_of_articles


class WarehouseReads:
    """The reads of the API's requests, over `settings.db`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.retry_after = str(max(1, math.ceil(settings.api_lock_wait_seconds)))

    def busy(self) -> ApiError:
        """The answer while a run holds the database: 503, try again after `Retry-After`."""
        return ApiError(503, "a newswatch run is writing to the database; try again shortly", {"Retry-After": self.retry_after})

    def __call__(self, reader: Callable[..., Any], *arguments, lock_wait: float | None = None) -> Any:
        """`reader(connection, *arguments)` in one short read-only connection; 503 while it cannot be opened."""
        settings = self.settings
        wait = settings.api_lock_wait_seconds if lock_wait is None else lock_wait
        try:
            with open_warehouse(settings.db, read_only=True, lock_wait=wait, memory_limit=settings.duckdb_memory_limit) as connection:
                try:
                    return reader(connection, *arguments)
                except duckdb.Error as error:
                    raise WarehouseError(f"database {settings.db}: {str(error).strip().splitlines()[0]}") from None
        except WarehouseBusy:
            raise self.busy() from None
        except WarehouseError as error:
            raise ApiError(503, str(error)) from None

    def keyword_article_ids(self, q: str, since: datetime | None) -> list[str]:
        """The articles matching a keyword query (seen since `since`), from the full-text index as the runs left it."""
        try:
            query = parse_query(q)
        except QueryError as error:
            raise ApiError(400, f"invalid query q={q!r}: {error}") from None
        try:
            hits = keyword_hits(self.settings.db, query, since=since, limit=MAX_SELECTED_ARTICLES)
        except SearchIndexError as error:
            raise ApiError(503, f"the search index cannot be used: {error}") from None
        return [article_id for article_id, _ in hits]

    def keyword_story_ids(self, q: str | None) -> set[str] | None:
        """Stories with an article matching a keyword query (None without a query), from the index as it stands."""
        if q is None:
            return None
        ids = self.keyword_article_ids(q, None)
        return set(self(lambda connection: stories_of_articles(connection, ids)).values()) if ids else set()
