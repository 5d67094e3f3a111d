"""Story detail page: a story's articles in time order, and a duplicate beside its original."""

import sys
from datetime import timedelta

import streamlit as st

from dashboards import reads
from dashboards.difference import ADDED_STYLE, REMOVED_STYLE, TEXT_STYLE, word_difference
from dashboards.plain_text import http_link, plain
from dashboards.snapshot import Source, format_time, load, page_arguments
from dashboards.timeline import bucket_for, bucket_start, timeline_chart

SIMILARITY_MEANINGS = {
    "url": "same canonical URL",
    "exact": "same normalised text",
    "copy": "word 5-shingle Jaccard",
    "rewrite": "probability of the rewrite model",
    "translation": "multilingual cosine",
}


def duplicate_marker(article: dict, titles: dict[str, str | None]) -> str:
    """'original', or '<kind> duplicate of: <original title> (similarity)'."""
    if article["duplicate_of"] is None:
        return "original"
    similarity = article["duplicate_similarity"]
    details = f" ({similarity:.2f})" if similarity is not None else ""
    original = titles.get(article["duplicate_of"]) or article["duplicate_of"]
    return f"{article['duplicate_kind'] or 'exact'} duplicate of: {original}{details}"


def article_rows(articles: list[dict]) -> list[dict]:
    """Table rows of a story's articles, in the query's time order."""
    titles = {article["article_id"]: article["title"] for article in articles}
    return [
        {
            "seen (UTC)": format_time(article["seen_at"], zone=False),
            "title": article["title"] or "(untitled)",
            "source": article["source_name"],
            "language": article["language"] or "",
            "duplicate": duplicate_marker(article, titles),
            "url": http_link(article["url"]),
        }
        for article in articles
    ]


def show_timeline(story: dict, articles: list[dict]) -> None:
    """A bar chart of the story's articles per hour or day."""
    since, until = story["first_seen_at"], story["last_seen_at"] + timedelta(microseconds=1)
    bucket = bucket_for(since, until)
    counts: dict = {}
    for article in articles:
        start = bucket_start(article["seen_at"], bucket)
        counts[start] = counts.get(start, 0) + 1
    # The axis covers whole days at least, so that a story of one hour is one bar among 24.
    axis_start = bucket_start(since, "day")
    axis_end = max(bucket_start(until - timedelta(microseconds=1), "day") + timedelta(days=1), until)
    rows = [{"time": start, "articles": count} for start, count in counts.items()]
    st.caption(f"Articles per {bucket} (UTC)")
    st.altair_chart(timeline_chart(rows, bucket, axis_start, axis_end, height=160))


def show_side_by_side(duplicate: dict, original: dict) -> None:
    """A duplicate beside its original, with what differs highlighted."""
    difference = word_difference(original["text"], duplicate["text"])
    kind = duplicate["duplicate_kind"] or "duplicate"
    similarity = duplicate["duplicate_similarity"]
    stored = (
        f"score {similarity:.2f} ({SIMILARITY_MEANINGS.get(kind, 'as stored')})" if similarity is not None
        else SIMILARITY_MEANINGS.get(kind, "no similarity stored")
    )
    st.markdown(
        f"**{plain(kind)}** · {plain(stored)} · {difference.common_share:.0%} of words in common · "
        f"{difference.removed_words} words only in the original, {difference.added_words} only in the duplicate"
    )
    st.html(
        f'<div style="font-size: 0.85rem;">Only in the original: <del style="{REMOVED_STYLE}">struck through</del> · '
        f'only in the duplicate: <ins style="{ADDED_STYLE}">marked</ins></div>'
    )
    left, right = st.columns(2)
    for column, label, article, body in (
        (left, "Original", original, difference.original_html),
        (right, "Duplicate", duplicate, difference.duplicate_html),
    ):
        with column:
            st.markdown(f"**{label}:** {plain(article['title'])}")
            st.caption(f"{plain(article['source_name'])} · seen {format_time(article['seen_at'])}")
            with st.container(height=520):
                st.html(f'<div style="{TEXT_STYLE}">{body}</div>')


def show(source: Source) -> None:
    """The page."""
    st.title("Story detail")
    requested = st.query_params.get("story")
    data = load(source, reads.read_story, requested)
    if data is None:
        return
    story = data["story"]
    if story is None:
        st.info("No stories yet: run `newswatch run` (feeds) or `newswatch run --fixtures DIR` (files) first.")
        return
    if requested and requested != story["story_id"]:
        st.warning(f"There is no story {plain(requested)}; showing the most recent one instead.")
    headlines = dict(data["choices"])
    st.session_state["story_choice"] = story["story_id"]
    st.sidebar.selectbox(
        "Story", list(headlines), key="story_choice",
        format_func=lambda story_id: headlines[story_id] or "(untitled)",
        on_change=lambda: st.query_params.update(story=st.session_state["story_choice"]),
    )

    st.subheader(plain(story["headline"]), anchor=False)
    articles = data["articles"]
    columns = st.columns(4)
    columns[0].metric("Articles", story["article_count"])
    columns[1].metric("Originals", story["original_count"])
    columns[2].metric("Duplicates", story["duplicate_count"])
    columns[3].metric("Sources", len(story["sources"]))
    st.caption(
        f"first seen {format_time(story['first_seen_at'])} · last seen {format_time(story['last_seen_at'])} · "
        f"sources: {plain(', '.join(story['sources']))}"
    )
    show_timeline(story, articles)

    st.subheader("Articles", anchor=False)
    st.dataframe(
        article_rows(articles),
        hide_index=True,
        column_config={
            "title": st.column_config.TextColumn("title", width="large"),
            "url": st.column_config.LinkColumn("url"),
        },
    )

    st.subheader("Duplicates side by side", anchor=False)
    duplicates = [article for article in articles if article["duplicate_of"]]
    if not duplicates:
        st.caption("No duplicates in this story.")
        return
    texts = data["texts"]
    by_id = {article["article_id"]: article for article in duplicates}
    chosen = duplicates[0]["article_id"]
    if len(duplicates) > 1:
        chosen = st.selectbox(
            "Duplicate", list(by_id),
            format_func=lambda article_id: (
                f"{by_id[article_id]['title'] or '(untitled)'} ({by_id[article_id]['duplicate_kind']})"
            ),
        )
    duplicate, original = texts.get(chosen), texts.get(by_id[chosen]["duplicate_of"])
    if duplicate is None or original is None:
        st.info("The original of this duplicate is no longer stored.")
        return
    show_side_by_side(duplicate, original)


show(page_arguments(sys.argv[1:])[0])
