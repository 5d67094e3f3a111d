"""The route of feed health: every feed with why it needs attention, as `newswatch feeds` and the dashboard show it."""

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter

from flows.api.reads import WarehouseReads
from reading.feeds import feed_health
from warehouse.feeds import list_feeds


def feed_routes(read: WarehouseReads) -> APIRouter:
    """`/feeds`, reading through `read`."""
    settings = read.settings
    router = APIRouter()

    @router.get("/feeds", tags=["service"])
    def feeds() -> dict:
        """Every feed's health: last status and error, failures in a row, next poll, last new item, and why it needs attention."""
        records = read(list_feeds)
        health = feed_health(records, datetime.now(UTC), settings.silent_feed_days)
        return {"feeds": [{**asdict(item.feed), "attention": item.attention} for item in health]}

    return router
