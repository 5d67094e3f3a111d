"""Stories page: the newest and fastest-growing stories, filtered by date range, feed and language."""

import sys
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboards import reads
from dashboards.snapshot import Source, count, format_time, load, page_arguments
from dashboards.timeline import bucket_for, bucket_starts, filled_counts

DEFAULT_DAYS = 7
GROWTH_WINDOW = timedelta(hours=24)
ORDERS = {"Newest": "recent", "Fastest-growing": "growth"}


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of this day."""
    return datetime.combine(day, time(), tzinfo=UTC)


def chosen_days(value, first: date, last: date) -> tuple[date, date]:
    """The (first, last) day of a date_input range, which holds one day while the user picks."""
    days = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    days = tuple(day for day in days if day is not None)
    if not days:
        return first, last
    return days[0], days[-1]


def sources_text(sources: list[str], shown: int = 3) -> str:
    """The first few source names, and how many more."""
    text = ", ".join(sources[:shown])
    return text + (f" +{len(sources) - shown}" if len(sources) > shown else "")


def story_rows(stories: list[dict], timelines: dict, starts: list[datetime]) -> list[dict]:
    """One table row per story."""
    return [
        {
            "headline": story["headline"] or "(untitled)",
            "articles": story["article_count"],
            "duplicates": story["duplicate_count"],
            "sources": sources_text(story["sources"]),
            "first seen (UTC)": format_time(story["first_seen_at"], zone=False),
            "last seen (UTC)": format_time(story["last_seen_at"], zone=False),
            "last 24 h": story["recent_count"],
            "timeline": filled_counts(timelines.get(story["story_id"], []), starts),
        }
        for story in stories
    ]


def show(source: Source) -> None:
    """The page."""
    st.title("Stories")
    facets = load(source, reads.read_facets, primary=False)
    if facets is None:
        return
    if not facets["article_count"]:
        st.info("No stories yet: run `newswatch run` (feeds) or `newswatch run --fixtures DIR` (files) first.")
        return
    first_day = facets["first_seen_at"].astimezone(UTC).date()
    last_day = facets["last_seen_at"].astimezone(UTC).date()
    default_first = max(first_day, last_day - timedelta(days=DEFAULT_DAYS - 1))

    date_column, order_column, limit_column = st.columns([2, 2, 1])
    days = date_column.date_input(
        "Seen between (UTC)", value=(default_first, last_day), min_value=first_day, max_value=last_day,
        help="An article is seen when it was published, else when it was ingested.",
    )
    since_day, until_day = chosen_days(days, default_first, last_day)
    order = order_column.segmented_control(
        "Order", list(ORDERS), default="Newest", required=True,
        help="Newest: latest article first. Fastest-growing: most articles in the last 24 hours of the range.",
    )
    limit = limit_column.number_input("Stories", min_value=1, max_value=500, value=50, step=10)
    feed_column, language_column = st.columns(2)
    feed_names = {feed["feed_id"]: f"{feed['name']} ({feed['article_count']})" for feed in facets["feeds"]}
    feeds = feed_column.multiselect(
        "Feeds", list(feed_names), format_func=feed_names.__getitem__, placeholder="all feeds"
    )
    language_names = {
        entry["language"]: f"{entry['language'] or 'unknown'} ({entry['article_count']})" for entry in facets["languages"]
    }
    languages = language_column.multiselect(
        "Languages", list(language_names), format_func=language_names.__getitem__, placeholder="all languages"
    )

    since, until = day_start(since_day), day_start(until_day) + timedelta(days=1)
    # Growth counts the 24 hours up to the newest article in the range, so older data still ranks.
    window_end = min(until, facets["last_seen_at"] + timedelta(microseconds=1))
    growing_since = window_end - GROWTH_WINDOW
    bucket = bucket_for(since, until)
    data = load(
        source, reads.read_stories, since, until, tuple(feeds) or None, tuple(languages) or None,
        ORDERS[order or "Newest"], growing_since, bucket, int(limit),
    )
    if data is None:
        return
    stories = data["stories"]
    if not stories:
        st.info("No stories match these filters.")
        return
    starts = bucket_starts(since, until, bucket)
    story_ids = [story["story_id"] for story in stories]
    event = st.dataframe(
        story_rows(stories, data["timelines"], starts),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="stories_table",
        column_config={
            "headline": st.column_config.TextColumn("headline", width=280),
            "last 24 h": st.column_config.NumberColumn(
                "last 24 h", help=f"Articles seen in the 24 hours up to {format_time(window_end)}"
            ),
            "timeline": st.column_config.BarChartColumn(
                "timeline", help=f"Articles per {bucket} (UTC), {since_day} to {until_day}", y_min=0,
                width=160,
            ),
        },
    )
    st.caption(
        f"{count(len(stories), 'story')} · select a row to open its articles and duplicates · "
        f"timeline: articles per {bucket} (UTC)"
    )
    if event.selection.rows:
        st.switch_page("story_page.py", query_params={"story": story_ids[event.selection.rows[0]]})


show(page_arguments(sys.argv[1:])[0])
