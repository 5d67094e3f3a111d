"""Watches page: every watch, what it looks for and the health of its deliveries, and the latest alerts.

Notification URLs are stored in clear (they are needed to deliver) and only ever shown masked
(`monitoring.notification_urls.mask_url`); delivery errors are stored masked already.
"""

import sys

import streamlit as st

from dashboards import reads
from dashboards.plain_text import plain
from dashboards.snapshot import Source, count, format_time, load, page_arguments
from monitoring.notification_urls import mask_url
from warehouse.watches import WatchOverview, WatchRecord

ALERTS_SHOWN = 50
# The watch select's first option (a None option would show as the select's empty placeholder).
ALL_WATCHES = "all"
STATUS_COLOURS = {"delivered": "green", "pending": "orange", "failed": "red"}


def looks_for(watch: WatchRecord) -> str:
    """'query: ...' for a keyword watch, 'like: ...' for one matched by meaning."""
    return f"query: {watch.query}" if watch.query is not None else f"like: {watch.like_text or ''}"


def masked_urls(urls: list[str]) -> str:
    """The notification URLs with their secrets hidden, or a dash for none."""
    return ", ".join(mask_url(url) for url in urls) or "—"


def delivery_counts(delivered: int, pending: int, failed: int) -> str:
    """'2 delivered, 0 pending, 1 failed'."""
    return f"{delivered} delivered, {pending} pending, {failed} failed"


def watch_rows(overviews: list[WatchOverview]) -> list[dict]:
    """One table row per watch."""
    return [
        {
            "id": item.watch.watch_id,
            "watch": item.watch.name,
            "looks for": looks_for(item.watch),
            "alerts when": f"≥ {count(item.watch.min_articles, 'article')} from ≥ {count(item.watch.min_sources, 'source')}",
            "notifies": masked_urls(item.watch.notify_urls),
            "last match (UTC)": format_time(item.last_matched_at, zone=False),
            "last story": (item.last_headline or "(untitled)") if item.last_story_id else "",
            "stories matched": item.matched_stories,
            "alerts": item.alerts,
            "deliveries": delivery_counts(item.delivered, item.pending, item.failed),
            "last error": f"{format_time(item.last_error_at, zone=False)}: {item.last_error}" if item.last_error else "",
        }
        for item in overviews
    ]


def latest_error(problem: dict) -> str:
    """' Latest error (<time>, <masked URL>): <error>' of a kind of delivery problem, or nothing."""
    latest = problem["latest"]
    if latest is None or not latest["error"]:
        return ""
    return f" Latest error ({format_time(latest['at'])}, {plain(mask_url(latest['url']))}): {plain(latest['error'])}"


def show_health(overviews: list[WatchOverview], health: dict, problems: dict) -> None:
    """Counts, and a banner when deliveries failed for good or are being retried."""
    columns = st.columns(5)
    columns[0].metric("Watches", len(overviews))
    columns[1].metric("Alerts", sum(item.alerts for item in overviews))
    columns[2].metric("Delivered", health["delivered"])
    columns[3].metric("Pending", health["pending"], help="Not delivered yet: due, or retried with backoff by a later run")
    columns[4].metric("Failed", health["failed"], help="Given up after the last attempt (NEWSWATCH_ALERT_MAX_ATTEMPTS)")
    failed, retrying = problems["failed"], problems["retrying"]
    if failed["count"]:
        st.error(f"{count(failed['count'], 'delivery')} failed for good.{latest_error(failed)}", icon=":material/error:")
    if retrying["count"]:
        st.warning(
            f"{count(retrying['count'], 'delivery')} failed and will be retried by a later run.{latest_error(retrying)}",
            icon=":material/warning:",
        )


def delivery_line(delivery: dict) -> str:
    """One delivery of an alert as safe Markdown: status, masked URL, attempts, and what failed or comes next."""
    status = delivery["status"]
    parts = [
        f":{STATUS_COLOURS.get(status, 'gray')}[**{plain(status)}**] {plain(mask_url(delivery['url']))}",
        count(delivery["attempts"], "attempt"),
    ]
    if delivery["delivered_at"] is not None:
        parts.append(f"delivered {format_time(delivery['delivered_at'])}")
    elif delivery["next_attempt_at"] is not None:
        parts.append(f"next attempt {format_time(delivery['next_attempt_at'])}")
    if delivery["last_error"]:
        # A delivery that succeeded at a later attempt keeps the error of the one before.
        label = "earlier error" if status == "delivered" else "last error"
        parts.append(f"{label}: {plain(delivery['last_error'])}")
    return " · ".join(parts)


def show_alerts(alerts: list[dict]) -> None:
    """Each alert: its story (a link to the story page), kind, size when alerted, time and deliveries."""
    for alert in alerts:
        with st.container(border=True):
            st.page_link(
                "story_page.py", label=f"**{plain(alert['headline'])}**", icon=":material/article:",
                query_params={"story": alert["story_id"]},
            )
            st.caption(
                f"{plain(alert['kind'])} · watch {plain(alert['watch_name'])} · when alerted "
                f"{count(alert['article_count'], 'article')} from {count(alert['source_count'], 'source')} · "
                f"{format_time(alert['created_at'])}"
            )
            if not alert["deliveries"]:
                st.caption("No notification URL: the alert is stored only.")
            for delivery in alert["deliveries"]:
                st.markdown(delivery_line(delivery))


def requested_watch() -> int | None:
    """The watch id of the URL (?watch=3), or None."""
    requested = (st.query_params.get("watch") or "").strip()
    return int(requested) if requested.isdigit() else None


def choose_watch() -> None:
    """Put the chosen watch in the URL, so the filtered alerts can be bookmarked and shared."""
    chosen = st.session_state["watch_choice"]
    if chosen == ALL_WATCHES:
        st.query_params.pop("watch", None)
    else:
        st.query_params["watch"] = str(chosen)


def show(source: Source) -> None:
    """The page."""
    st.title("Watches")
    requested = st.query_params.get("watch")
    data = load(source, reads.read_watches, requested_watch(), ALERTS_SHOWN)
    if data is None:
        return
    overviews = data["watches"]
    if not overviews:
        st.info("No watches yet: `newswatch add-watch NAME --query QUERY` (or `--like DESCRIPTION`) adds one.")
        return
    show_health(overviews, data["health"], data["problems"])
    st.dataframe(
        watch_rows(overviews),
        hide_index=True,
        column_config={
            "watch": st.column_config.TextColumn(width="medium"),
            "looks for": st.column_config.TextColumn(width="medium"),
            "notifies": st.column_config.TextColumn(width="medium"),
            "last error": st.column_config.TextColumn(width="medium"),
        },
    )

    st.subheader("Recent alerts", anchor=False)
    if requested and data["watch_id"] is None:
        st.warning(f"There is no watch {plain(requested)}; showing the alerts of every watch.")
    names = {item.watch.watch_id: item.watch.name for item in overviews}
    st.session_state["watch_choice"] = ALL_WATCHES if data["watch_id"] is None else data["watch_id"]
    st.selectbox(
        "Watch", [ALL_WATCHES, *names], key="watch_choice",
        format_func=lambda choice: "All watches" if choice == ALL_WATCHES else f"{names[choice]} (#{choice})",
        on_change=choose_watch,
    )
    alerts = data["alerts"]
    if not alerts:
        which = "this watch" if data["watch_id"] is not None else "any watch"
        st.info(f"No alerts from {which} yet: a watch alerts when a run stores a story it matches.")
        return
    st.caption(f"the latest {count(len(alerts), 'alert')}, newest first" if len(alerts) == ALERTS_SHOWN
               else f"{count(len(alerts), 'alert')}, newest first")
    show_alerts(alerts)


show(page_arguments(sys.argv[1:])[0])
