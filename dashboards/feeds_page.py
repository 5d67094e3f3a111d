"""Feeds page: each feed's health, silent feeds, new articles per feed over time, recent failures."""

import sys
from datetime import UTC, datetime, timedelta

import streamlit as st

from dashboards import reads
from dashboards.plain_text import http_link, plain
from dashboards.snapshot import Source, format_time, load, page_arguments
from dashboards.timeline import BUCKET_LENGTHS, bucket_start, timeline_chart
from flows.settings import Settings
from reading.feeds import FeedHealth, feed_health
from warehouse.feeds import FeedRecord

WINDOWS = {"per day, last 30 days": ("day", timedelta(days=30)), "per hour, last 48 hours": ("hour", timedelta(hours=48))}
FAILURES_SHOWN = 20


def feed_status(feed: FeedRecord, reasons: list[str]) -> str:
    """'failing', 'silent', 'never polled' or 'ok', from the reasons `newswatch feeds` gives too."""
    if feed.consecutive_failures:
        return "failing"
    if reasons:  # a feed that is not failing needs attention only for being silent
        return "silent"
    return "never polled" if feed.last_fetched_at is None else "ok"


def feed_row(health: FeedHealth, status: str) -> dict:
    """A feed's row of the health table."""
    feed = health.feed
    return {
        "feed": feed.name or feed.url,
        "status": status,
        "attention": "; ".join(health.attention),
        "HTTP": "" if feed.last_status is None else str(feed.last_status),
        "last success": format_time(feed.last_success_at),
        "failures in a row": feed.consecutive_failures,
        "next due": format_time(feed.next_due_at),
        "last new item": format_time(feed.last_new_item_at),
        "url": http_link(feed.url),
    }


def show_health(feeds: list[FeedRecord], silent_days: float) -> None:
    """Counts, the silent and failing feeds by name, and the health table."""
    health = feed_health(feeds, datetime.now(UTC), silent_days)
    statuses = [feed_status(item.feed, item.attention) for item in health]
    columns = st.columns(4)
    columns[0].metric("Feeds", len(feeds))
    columns[1].metric("OK", statuses.count("ok"))
    columns[2].metric("Failing", statuses.count("failing"))
    columns[3].metric("Silent", statuses.count("silent"), help=f"Answering, but nothing new for {silent_days:g} days")
    for label, status in (("Failing feeds", "failing"), ("Silent feeds", "silent")):
        names = [feed.name or feed.url for feed, current in zip(feeds, statuses) if current == status]
        if names:
            st.warning(f"{label}: " + ", ".join(plain(name) for name in names), icon=":material/warning:")
    st.dataframe(
        [feed_row(item, status) for item, status in zip(health, statuses)],
        hide_index=True,
        column_config={"url": st.column_config.LinkColumn("url"), "attention": st.column_config.TextColumn(width="medium")},
    )


def show_chart(counts: list[dict], bucket: str, since: datetime) -> None:
    """New articles per feed over time, stacked."""
    if not counts:
        st.caption("No new articles in this window.")
        return
    rows = [{"time": row["bucket_start"], "articles": row["article_count"], "feed": row["feed"]} for row in counts]
    until = bucket_start(datetime.now(UTC), bucket) + BUCKET_LENGTHS[bucket]
    st.altair_chart(timeline_chart(rows, bucket, since, until, color="feed", height=260))
    st.caption(f"New articles per {bucket} of ingestion (UTC), by feed")


def show(source: Source, settings: Settings) -> None:
    """The page."""
    st.title("Feeds")
    if source.settings_error:
        st.error(plain(source.settings_error))
        return
    window = st.segmented_control("New articles", list(WINDOWS), default=list(WINDOWS)[0], required=True)
    bucket, length = WINDOWS[window or list(WINDOWS)[0]]
    # Rounded to the bucket so the cached read stays valid for a while.
    since = bucket_start(datetime.now(UTC) - length, bucket)
    data = load(source, reads.read_feeds, bucket, since, FAILURES_SHOWN)
    if data is None:
        return
    st.subheader("Health", anchor=False)
    if data["feeds"]:
        show_health(data["feeds"], settings.silent_feed_days)
    else:
        st.info("No feeds yet: add one with `newswatch add-feed URL` or `newswatch import-opml FILE`.")
    st.subheader("New articles per feed", anchor=False)
    show_chart(data["counts"], bucket, since)
    if data["failures"]:
        st.subheader("Latest fetch failures", anchor=False)
        st.dataframe(
            [
                {
                    "failed": format_time(failure["failed_at"]),
                    "feed": failure["feed"] or "",
                    "url": failure["url"],
                    "HTTP": "" if failure["status"] is None else str(failure["status"]),
                    "error": failure["error"],
                }
                for failure in data["failures"]
            ],
            hide_index=True,
        )


show(*page_arguments(sys.argv[1:]))
