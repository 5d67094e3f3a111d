"""The routes of watches: every watch, a watch's alerts, and a watch as an Atom feed (notification URLs masked)."""

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParameter
from fastapi import Query as QueryParameter
from fastapi.responses import Response

from extract import atom
from monitoring.notification_urls import mask_url
from flows.api.atom_entries import atom_response, entry_links, listed_articles, story_summary
from flows.api.errors import ApiError
from flows.api.parameters import DEFAULT_PAGE, MAX_PAGE
from flows.api.reads import WarehouseReads
from warehouse.queries import story_articles
from warehouse.watches import alerted_stories, delivery_health, find_watch, recent_alerts, watch_overviews


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


def watch_routes(read: WarehouseReads) -> APIRouter:
    """`/watches`, `/watches/{name}/alerts` and `/watches/{name}.atom`, reading through `read`."""
    router = APIRouter()

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
            listed, more = listed_articles(own)
            sources = len({m["source_name"] for m in own})
            entries.append(atom.Entry(
                id=atom.story_entry_id(story["story_id"]), title=story["headline"] or "(untitled)",
                updated=story["last_alerted_at"], published=story["first_alerted_at"],
                summary=f"{story['last_kind']}: " + story_summary(story["article_count"], story["duplicate_count"], sources),
                links=entry_links(story["story_id"], own, base), categories=[story["last_kind"]],
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

    return router
