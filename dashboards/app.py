"""The newswatch dashboard: stories, a story's articles and duplicates, feed health, search, watches, runs.

Run it with `newswatch dashboard [--db PATH] [--port N]`, or
`streamlit run dashboards/app.py -- --db newswatch.duckdb [--lock-wait SECONDS]`; without `--db`
it reads the `NEWSWATCH_DB` environment variable, else `newswatch.duckdb`. It only reads, in
short read-only connections (see `dashboards.snapshot`), so it is safe beside a running pipeline.
"""

import sys

import streamlit as st

from dashboards.plain_text import plain
from dashboards.snapshot import CACHE_SECONDS, read_once_per_run, refresh

st.set_page_config(page_title="newswatch", layout="wide")

PAGES = [
    st.Page("stories_page.py", title="Stories", icon=":material/newspaper:", url_path="stories", default=True),
    st.Page("story_page.py", title="Story detail", icon=":material/article:", url_path="story"),
    st.Page("feeds_page.py", title="Feeds", icon=":material/rss_feed:", url_path="feeds"),
    st.Page("search_page.py", title="Search", icon=":material/search:", url_path="search"),
    st.Page("watches_page.py", title="Watches", icon=":material/notifications:", url_path="watches"),
    st.Page("runs_page.py", title="Runs", icon=":material/history:", url_path="runs"),
]

page = st.navigation(PAGES)
source = read_once_per_run(sys.argv[1:])  # the page takes the same source and settings
with st.sidebar:
    st.caption(f"newswatch · {plain(str(source.path))} (read-only)")
    if st.button("Refresh data", help=f"Data is otherwise re-read at most every {CACHE_SECONDS} s."):
        refresh()
page.run()
