"""Digests: the top stories of a period (ranked by growth in the period, then size), for a person to read.

`newswatch digest` writes one (Markdown, HTML or JSON) or sends it; `newswatch serve` adds a
daily `digest` deployment when a digest target is set (`NEWSWATCH_DIGEST_NOTIFY`, or
`NEWSWATCH_DIGEST_DIR`), which also publishes the digest as a Prefect Markdown artifact.
"""

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.settings import Settings
from monitoring.delivery import deliver
from monitoring.digest import compose_digest, digest_message, render_digest
from monitoring.notification_urls import mask_url
from warehouse.connection import open_warehouse
from warehouse.queries import list_stories, story_articles
from warehouse.watches import find_watch, matched_story_ids

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class PeriodError(ValueError):
    """A `--since` value that is neither a duration nor a date; the message is one sentence."""


def parse_since(text: str, now: datetime) -> datetime:
    """When a period starts: a duration back from `now` (`30m`, `24h`, `7d`, `2w`) or an ISO date or time (UTC unless it says).

    Raises:
        PeriodError: Neither.
    """
    match = _DURATION.match(text)
    if match:
        try:
            return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
        except OverflowError:  # e.g. 99999999d: before the year 1
            raise PeriodError(f"--since {text!r} reaches back too far: give a shorter duration or a date") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"--since {text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO date (2026-12-01)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UnknownWatch(LookupError):
    """No watch of that name or id."""


def build_digest(
    db: Path, settings: Settings, since: datetime, until: datetime, *, watch: str | None = None, limit: int = 20,
    title: str | None = None,
) -> dict:
    """The digest of [since, until): its stories with their sources, first and last seen, and top articles.

    Stories are ranked by the articles seen in the period, then by size. With `watch`, only the
    stories that watch has matched.

    Raises:
        UnknownWatch: `watch` names no watch.
    """
    with open_warehouse(db, read_only=True, memory_limit=settings.duckdb_memory_limit) as connection:
        return read_digest(connection, since, until, watch=watch, limit=limit, title=title)


def read_digest(
    connection: duckdb.DuckDBPyConnection, since: datetime, until: datetime, *, watch: str | None = None, limit: int = 20,
    title: str | None = None,
) -> dict:
    """`build_digest` in an open connection (the HTTP API opens its own, briefly).

    Raises:
        UnknownWatch: `watch` names no watch.
    """
    story_ids = None
    if watch is not None:
        found = find_watch(connection, watch)
        if found is None:
            raise UnknownWatch(f"no watch {watch}")
        story_ids = matched_story_ids(connection, found.watch_id)
    stories = [] if story_ids == [] else list_stories(
        connection, limit, since=since, until=until, story_ids=story_ids, order="growth", growing_since=since,
        details=True,
    )
    members = story_articles(connection, [story["story_id"] for story in stories], details=True)
    return compose_digest(stories, members, since, until, watch=watch, title=title)


@flow(name="digest", log_prints=False)
def daily_digest(db: Path, settings: Settings | None = None) -> str:
    """Send the day's digest: the top stories of the last `NEWSWATCH_DIGEST_HOURS` hours.

    The digest goes to every `NEWSWATCH_DIGEST_NOTIFY` URL and, with `NEWSWATCH_DIGEST_DIR`, into
    that folder as Markdown, HTML and JSON files; it is also published as the Prefect Markdown
    artifact `digest`. A failing destination is logged; it does not fail the run.

    Args:
        db: DuckDB file.
        settings: Settings (from the environment when omitted).

    Returns:
        What was sent where. The digest only reads the warehouse, so it runs beside ingest runs.
    """
    settings = settings or Settings()
    run_logger = get_run_logger()
    until = datetime.now(UTC)
    digest = build_digest(db, settings, until - timedelta(hours=settings.digest_hours), until, limit=settings.digest_stories)
    markdown = render_digest(digest, "markdown")
    create_markdown_artifact(markdown, key="digest", description="The top stories of the day")
    sent = []
    if settings.digest_dir is not None:
        folder = Path(settings.digest_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"digest-{until:%Y%m%dT%H%M%SZ}"
        for extension, format_ in (("md", "markdown"), ("html", "html"), ("json", "json")):
            (folder / f"{stem}.{extension}").write_text(render_digest(digest, format_), encoding="utf-8")
        sent.append(str(folder / f"{stem}.*"))
    message = digest_message(digest)
    for url in settings.digest_notify:
        outcome = deliver(url, message, allow_private_networks=settings.allow_private_networks, timeout=settings.notify_timeout)
        if outcome.ok:
            sent.append(mask_url(url))
        else:
            run_logger.warning("digest not delivered to %s: %s", mask_url(url), outcome.error)
    summary = f"digest of {len(digest['stories'])} stories to {', '.join(sent) or 'nowhere'}"
    run_logger.info(summary)
    return summary
