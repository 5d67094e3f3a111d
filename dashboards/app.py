"""The newswatch dashboard: the most recently active stories and their articles, read-only.

Run it with `streamlit run dashboards/app.py -- --db newswatch.duckdb`; without `--db` it reads
the `NEWSWATCH_DB` environment variable, else `newswatch.duckdb`.
"""

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from warehouse.connection import WarehouseError, open_warehouse
from warehouse.queries import list_stories, story_articles

READ_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.2


def database_path(argv: list[str]) -> Path:
    """The database from `--db`, else `NEWSWATCH_DB`, else `newswatch.duckdb`."""
    parser = argparse.ArgumentParser(prog="dashboards/app.py", allow_abbrev=False)
    parser.add_argument("--db", default=os.environ.get("NEWSWATCH_DB", "newswatch.duckdb"), help="DuckDB file to read")
    # parse_known_args: under AppTest or other runners sys.argv belongs to someone else.
    arguments, _ = parser.parse_known_args(argv)
    return Path(arguments.db)


def is_lock_error(error: WarehouseError) -> bool:
    """Whether the database was busy because another process holds it open for writing."""
    message = str(error).lower()
    return "lock" in message or "conflict" in message


@st.cache_data(ttl=30, show_spinner=False)
def read_stories(path: str, limit: int) -> dict:
    """Read the latest stories and their articles in one short read-only connection.

    Args:
        path: The DuckDB file.
        limit: How many stories.

    Returns:
        `{"read_at": datetime, "stories": [...], "articles": {story_id: [...]}}`, plain data so
        Streamlit can cache it.

    Raises:
        WarehouseError: The database cannot be read, or stayed locked through every retry.
    """
    delay = FIRST_BACKOFF_SECONDS
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            with open_warehouse(path, read_only=True) as connection:
                stories = list_stories(connection, limit)
                articles = story_articles(connection, [story["story_id"] for story in stories])
            break
        except WarehouseError as error:
            # A writer holds the file only for the length of a load: wait for it, then give up.
            if not is_lock_error(error) or attempt == READ_ATTEMPTS:
                raise
            time.sleep(delay)
            delay *= 2
    by_story: dict[str, list[dict]] = {}
    for article in articles:
        by_story.setdefault(article["story_id"], []).append(article)
    return {"read_at": datetime.now(UTC), "stories": stories, "articles": by_story}


def format_time(moment: datetime | None) -> str:
    """A timestamp in UTC to the minute, or a dash when unknown."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def duplicate_marker(article: dict, titles: dict[str, str | None]) -> str:
    """'duplicate of: <original title> (kind, similarity)', or '' for an original."""
    original = article["duplicate_of"]
    if original is None:
        return ""
    details = [article["duplicate_kind"] or "duplicate"]
    if article["duplicate_similarity"] is not None:
        details.append(f"{article['duplicate_similarity']:.2f}")
    return f"duplicate of: {titles.get(original) or original} ({', '.join(details)})"


def article_rows(articles: list[dict], titles: dict[str, str | None]) -> list[dict]:
    """Table rows for one story's articles, kept in the query's oldest-first order."""
    return [
        {
            "title": article["title"] or "(untitled)",
            "published": format_time(article["published_at"]),
            "url": article["url"],
            "duplicate": duplicate_marker(article, titles),
        }
        for article in articles
    ]


def show_stories(path: Path, limit: int) -> None:
    """Render the stories, or one message saying why there are none."""
    if not path.exists():
        st.info(f"No database at {path} yet: run `newswatch run --fixtures DIR` first.")
        return
    try:
        snapshot = read_stories(str(path), limit)
    except WarehouseError as error:
        (st.warning if is_lock_error(error) else st.error)(str(error))
        return
    st.caption(f"data as of {format_time(snapshot['read_at'])}")
    if not snapshot["stories"]:
        st.info("No stories yet.")
        return
    titles = {a["article_id"]: a["title"] for members in snapshot["articles"].values() for a in members}
    for story in snapshot["stories"]:
        label = (
            f"{story['headline'] or '(untitled)'} · {story['article_count']} articles, "
            f"{story['duplicate_count']} duplicates"
        )
        with st.expander(label):
            st.caption(
                f"first published {format_time(story['first_published_at'])} · "
                f"last published {format_time(story['last_published_at'])}"
            )
            st.dataframe(
                article_rows(snapshot["articles"].get(story["story_id"], []), titles),
                hide_index=True,
                column_config={"url": st.column_config.LinkColumn("url")},
            )


def main() -> None:
    """The page."""
    st.title("newswatch — stories")
    limit = st.number_input("stories to show", min_value=1, max_value=500, value=20, step=5)
    show_stories(database_path(sys.argv[1:]), int(limit))


main()
