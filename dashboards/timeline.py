"""Article-count timelines: choosing hour/day/week buckets, filling gaps, and the bar chart."""

from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd

BUCKET_LENGTHS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def bucket_for(since: datetime, until: datetime) -> str:
    """Hours for up to 3 days, days for up to 120 days, weeks beyond."""
    span = until - since
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=120):
        return "day"
    return "week"


def bucket_start(moment: datetime, bucket: str) -> datetime:
    """The start of the bucket holding `moment`, as DuckDB's date_trunc gives it (weeks start on Monday)."""
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def bucket_starts(since: datetime, until: datetime, bucket: str) -> list[datetime]:
    """Every bucket start from the one holding `since` to the one holding the last moment before `until`."""
    step = BUCKET_LENGTHS[bucket]
    current = bucket_start(since, bucket)
    last = bucket_start(max(since, until - timedelta(microseconds=1)), bucket)
    starts = []
    while current <= last:
        starts.append(current)
        current += step
    return starts


def filled_counts(counts: list[tuple[datetime, int]], starts: list[datetime]) -> list[int]:
    """The counts on these bucket starts, 0 where a bucket has no articles."""
    by_start = dict(counts)
    return [by_start.get(start, 0) for start in starts]


# Vega-Lite time units matching the buckets, in UTC so a viewer's time zone does not shift the bars.
_TIME_UNITS = {"hour": "utcyearmonthdatehours", "day": "utcyearmonthdate", "week": "utcyearweek"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timeline_chart(
    rows: list[dict], bucket: str, since: datetime, until: datetime, color: str | None = None, height: int = 180
) -> alt.Chart:
    """Bars of article counts per bucket over [since, until), one bar width per bucket.

    Args:
        rows: Dicts with `time` (a bucket start) and `articles`, and the `color` field if given.
        bucket: "hour", "day" or "week".
        since: Start of the time axis.
        until: End of the time axis.
        color: A field to stack and colour the bars by (e.g. "feed").
        height: Chart height in pixels.
    """
    frame = pd.DataFrame(
        {
            "time": [_iso(row["time"]) for row in rows],
            "articles": [row["articles"] for row in rows],
            **({color: [row[color] for row in rows]} if color else {}),
        }
    )
    unit = _TIME_UNITS[bucket]
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{unit}(time):T", title=f"{bucket} (UTC)", scale=alt.Scale(domain=[_iso(since), _iso(until)])),
        y=alt.Y("sum(articles):Q", title="articles", axis=alt.Axis(tickMinStep=1)),
        tooltip=[alt.Tooltip(f"{unit}(time):T", title=f"{bucket} (UTC)"), alt.Tooltip("sum(articles):Q", title="articles")]
        + ([alt.Tooltip(f"{color}:N")] if color else []),
    )
    if color:
        chart = chart.encode(color=alt.Color(f"{color}:N", title=color, legend=alt.Legend(orient="bottom")))
    return chart.properties(height=height)
