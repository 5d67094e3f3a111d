"""Runs page: the latest pipeline runs and what each did."""

import sys

import streamlit as st

from dashboards import reads
from dashboards.plain_text import plain
from dashboards.snapshot import Source, format_time, load, page_arguments
from warehouse.runs import RunRecord

RUNS_SHOWN = 100


def duration(run: RunRecord) -> str:
    """How long a finished run took, as minutes and seconds."""
    if run.finished_at is None:
        return ""
    seconds = max(0, round((run.finished_at - run.started_at).total_seconds()))
    return f"{seconds // 60}:{seconds % 60:02d}"


def run_rows(runs: list[RunRecord]) -> list[dict]:
    """One table row per run."""
    return [
        {
            "started": format_time(run.started_at),
            "flow": run.flow,
            "status": run.status,
            "duration (m:s)": duration(run),
            "feeds polled": run.feeds_polled,
            "not modified": run.not_modified,
            "new articles": run.new_articles,
            "duplicates": run.duplicates,
            "new stories": run.new_stories,
            "errors": run.errors,
            "message": run.message or "",
        }
        for run in runs
    ]


def show(source: Source) -> None:
    """The page."""
    st.title("Runs")
    runs = load(source, reads.read_runs, RUNS_SHOWN)
    if runs is None:
        return
    if not runs:
        st.info(
            "No runs recorded yet. Each ingest run (`newswatch run` and the scheduled flows) is listed "
            "here with its counts once the pipeline records it."
        )
        return
    latest = runs[0]
    columns = st.columns(4)
    columns[0].metric("Latest run", plain(latest.status))
    columns[1].metric("New articles", latest.new_articles, help="In the latest run")
    columns[2].metric("New stories", latest.new_stories, help="In the latest run")
    columns[3].metric("Failed runs", sum(run.status == "failed" for run in runs), help=f"Of the {len(runs)} shown")
    took = f", took {duration(latest)} (m:s)" if latest.finished_at else ", still running"
    st.caption(f"latest: {plain(latest.flow)} started {format_time(latest.started_at)}{took} · run {plain(latest.run_id)}")
    st.dataframe(run_rows(runs), hide_index=True, column_config={"message": st.column_config.TextColumn(width="large")})


show(page_arguments(sys.argv[1:])[0])
