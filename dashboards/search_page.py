"""Search page: keyword search on the full-text index, semantic search on the vector index, results grouped by story."""

import sys
from datetime import UTC, datetime, timedelta

import streamlit as st

from dashboards import reads
from dashboards.plain_text import plain
from dashboards.snapshot import Source, count, format_time, load, missing_database_message, page_arguments
from extract.query import And, Node, Or, Phrase, Query, QueryError, Term, parse_query, text_analyzer
from flows.settings import Settings
from reading.embedder import local_embedder
from reading.search import SearchResult, VectorIndexSettings, group_by_story

RESULT_LIMIT = 50
SNIPPET_CHARACTERS = 220
DEFAULT_MIN_SIMILARITY = 0.3
# The "seen" filter: how far back an article may have been seen (published, else ingested).
SINCE_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}
# A snippet is looked for in this much of an article's text, analyzed a piece at a time.
SNIPPET_SCAN_CHARACTERS = 20_000
_SCAN_PIECE = 2_000


def highlighted_tokens(query: Query) -> frozenset[str]:
    """The analyzed tokens of the words and phrases a query looks for (not those it negates)."""
    tokens: set[str] = set()

    def collect(node: Node) -> None:
        if isinstance(node, Term):
            tokens.add(node.token)
        elif isinstance(node, Phrase):
            tokens.update(node.tokens)
        elif isinstance(node, And | Or):
            for part in node.parts:
                collect(part)
        # A Not part is what the results do not contain: nothing of it to highlight.

    collect(query.root)
    return frozenset(tokens)


def matched_spans(text: str, tokens: frozenset[str], offset: int = 0) -> list[tuple[int, int]]:
    """(start, end) of each word of `text` that analyzes to one of `tokens` ("Invitations" for "invit")."""
    if not tokens:
        return []
    return [
        (offset + token.char_offset_from, offset + token.char_offset_to)
        for token in text_analyzer().pre_tokenize(text).tokens
        if token.text in tokens
    ]


def first_match(text: str, tokens: frozenset[str]) -> int | None:
    """Where the first word that matches starts, in the first `SNIPPET_SCAN_CHARACTERS` of the text."""
    start = 0
    end_of_scan = min(len(text), SNIPPET_SCAN_CHARACTERS)
    while start < end_of_scan:
        end = min(len(text), start + _SCAN_PIECE)
        if end < len(text):
            # End the piece at a space, so no word is cut in two.
            space = text.rfind(" ", start, end)
            end = space if space > start else end
        spans = matched_spans(text[start:end], tokens, start)
        if spans:
            return spans[0][0]
        start = end
    return None


def snippet(text: str, tokens: frozenset[str]) -> tuple[str, list[tuple[int, int]]]:
    """A piece of the text (on one line) around its first matching word, else its beginning, and the matches in it."""
    flat = " ".join((text or "").split())
    position = first_match(flat, tokens)
    start = 0 if position is None else max(0, position - SNIPPET_CHARACTERS // 3)
    if start:
        # Start at a word.
        space = flat.find(" ", start, position)
        start = space + 1 if space != -1 else start
    end = start + SNIPPET_CHARACTERS
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    piece = flat[start:end]
    spans = matched_spans(piece, tokens)
    prefix = "…" if start else ""
    shift = len(prefix)
    return prefix + piece + ("…" if end < len(flat) else ""), [(a + shift, b + shift) for a, b in spans]


def emphasised(text: str, spans: list[tuple[int, int]]) -> str:
    """Text as safe Markdown with each span in bold."""
    parts, position = [], 0
    for start, end in spans:
        if start < position:
            continue
        parts.append(plain(text[position:start], empty=""))
        parts.append(f"**{plain(text[start:end], empty='')}**")
        position = end
    parts.append(plain(text[position:], empty=""))
    return "".join(parts)


def show_results(results: list[SearchResult], score_label: str, tokens: frozenset[str]) -> None:
    """Each story (a link to its page) with its matching articles and a snippet of each, matching words in bold."""
    groups = group_by_story(results)
    st.caption(f"{count(len(results), 'article')} in {count(len(groups), 'story')}")
    for group in groups:
        first = group[0].article
        with st.container(border=True):
            st.page_link(
                "story_page.py", label=f"**{plain(first['story_headline'])}**", icon=":material/article:",
                query_params={"story": first["story_id"]},
            )
            for result in group:
                article = result.article
                duplicate = f" · {plain(article['duplicate_kind'])} duplicate" if article["duplicate_of"] else ""
                piece, spans = snippet(article["text"], tokens)
                st.markdown(f"{plain(article['title'])}  \n:gray[{emphasised(piece, spans)}]")
                st.caption(
                    f"{plain(article['source_name'])} · seen {format_time(article['seen_at'])} · "
                    f"{score_label} {result.score:.3g}{duplicate}"
                )


def since_time(window: str | None) -> datetime | None:
    """The start of a "seen" window (to the minute, so a cached search serves a minute of reruns), or None for all."""
    length = SINCE_WINDOWS.get(window or "all")
    if length is None:
        return None
    return datetime.now(UTC).replace(second=0, microsecond=0) - length


def within(window: str | None) -> str:
    """' seen in the last 7d', or nothing for all time."""
    return "" if SINCE_WINDOWS.get(window or "all") is None else f" seen in the last {window}"


def keyword_search(source: Source, query_text: str, window: str | None) -> None:
    """Articles that match a keyword query, from the full-text index beside the warehouse."""
    try:
        query = parse_query(query_text)
    except QueryError as error:
        # The query comes from the URL (?q=...) too: a shared link must not bring markup.
        st.error(plain(f"This query cannot be searched: {error}."))
        return
    found = load(source, reads.read_keyword_search, source.path, query_text, since_time(window), RESULT_LIMIT)
    if found is None:
        return
    if found["index"] == "missing":
        st.info("There is no search index yet: the next ingest run (`newswatch run`) builds it.")
        return
    if found["index"] == "unusable":
        st.warning(
            f"The search index cannot be used ({plain(found['message'])}); the next ingest run (`newswatch run`) rebuilds it."
        )
        return
    if not found["results"]:
        st.info(f"No article matches {plain(repr(query_text))}{within(window)}.")
        return
    show_results(found["results"], "score", highlighted_tokens(query))


def semantic_search(source: Source, settings: Settings, query: str, min_similarity: float, window: str | None) -> None:
    """Articles nearest in meaning to the query, embedded with the pipeline's model, from the vector index."""
    if not source.path.exists():
        st.info(missing_database_message(source.path))  # before loading the model for nothing
        return
    try:
        with st.spinner(f"Embedding the query with {plain(settings.model)}…"):
            vector = local_embedder(settings).embed([query])[0][0]  # the model and torch load on first use
    except Exception as error:  # a model that cannot load: say so in one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        st.error(f"Cannot load the embedding model {plain(settings.model)}: {plain(first_line)}")
        return
    index = VectorIndexSettings.of(settings)
    found = load(
        source, reads.read_semantic_search, source.path, index, tuple(float(value) for value in vector), since_time(window),
        RESULT_LIMIT,
    )
    if found is None:
        return
    if not found["vectors"]:
        st.info(f"No article has a vector of the model {plain(index.model)} yet: run the pipeline with this model first.")
        return
    results = [result for result in found["results"] if result.score >= min_similarity]
    if not results:
        st.info(f"No article{within(window)} is at least {min_similarity:.2f} similar to this query.")
        return
    show_results(results, "similarity", frozenset())


def show(source: Source, settings: Settings) -> None:
    """The page."""
    st.title("Search")
    # Bound to the URL (?mode=Semantic&q=...&since=7d), so a search can be bookmarked and shared.
    mode_column, since_column = st.columns([1, 1])
    mode = mode_column.segmented_control(
        "Search by", ["Keyword", "Semantic"], default="Keyword", required=True, key="mode", bind="query-params"
    )
    window = since_column.segmented_control(
        "Seen in the last", list(SINCE_WINDOWS), default="all", required=True, key="since", bind="query-params",
        help="An article is seen when it was published, else when it was ingested.",
    )
    query = (st.text_input(
        "Search articles", key="q", bind="query-params",
        placeholder='words, "a phrase", AND, OR, NOT, -word, (groups)' if mode != "Semantic" else "describe an event",
    ) or "").strip()
    min_similarity = DEFAULT_MIN_SIMILARITY
    if mode == "Semantic":
        min_similarity = st.slider("Minimum similarity", 0.0, 1.0, DEFAULT_MIN_SIMILARITY, 0.05)
    if not query:
        st.caption(
            'Keyword search finds articles with every word, "an exact phrase", words joined by OR, and not '
            "those after NOT or a dash (-word); parentheses group. Case, accents and word endings do not "
            "matter. Semantic search embeds the query with the pipeline's model and finds the closest articles."
        )
        return
    if mode == "Semantic":
        if source.settings_error:
            st.error(plain(source.settings_error))
            return
        semantic_search(source, settings, query, min_similarity, window)
    else:
        keyword_search(source, query, window)


show(*page_arguments(sys.argv[1:]))
