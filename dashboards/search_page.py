"""Search page: keyword and semantic search over articles, results grouped by story."""

import re
import sys

import numpy as np
import streamlit as st
from pydantic import ValidationError

from dashboards import reads
from dashboards.plain_text import plain
from dashboards.snapshot import Source, count, format_time, load, source_from_arguments
from flows.settings import Settings, load_settings, settings_error_message

RESULT_LIMIT = 50
SNIPPET_CHARACTERS = 220
DEFAULT_MIN_SIMILARITY = 0.3
# A quoted phrase, or a word.
_TERM = re.compile(r'"([^"]+)"|(\S+)')


def parse_terms(query: str) -> list[str]:
    """The words and "quoted phrases" of a query, lower-cased, each once, in order."""
    terms = []
    for phrase, word in _TERM.findall(query):
        term = " ".join((phrase or word).split()).lower()
        if term and term not in terms:
            terms.append(term)
    return terms


def snippet(text: str, terms: list[str]) -> str:
    """A piece of text around the first term found, else its beginning, on one line."""
    flat = " ".join(text.split())
    lowered = flat.lower()
    positions = [lowered.find(term) for term in terms if term in lowered]
    if not positions:
        return flat[:SNIPPET_CHARACTERS] + ("…" if len(flat) > SNIPPET_CHARACTERS else "")
    start = max(0, min(positions) - SNIPPET_CHARACTERS // 3)
    end = start + SNIPPET_CHARACTERS
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def emphasised(text: str, terms: list[str]) -> str:
    """Text as safe Markdown with every occurrence of a term in bold."""
    if not terms:
        return plain(text, empty="")
    pattern = re.compile("|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    parts, position = [], 0
    for match in pattern.finditer(text):
        parts.append(plain(text[position : match.start()], empty=""))
        parts.append(f"**{plain(match.group(), empty='')}**")
        position = match.end()
    parts.append(plain(text[position:], empty=""))
    return "".join(parts)


def group_by_story(results: list[dict]) -> list[list[dict]]:
    """Results grouped by story; stories in the order of their best result."""
    groups: dict[str, list[dict]] = {}
    for result in results:
        groups.setdefault(result["story_id"], []).append(result)
    return list(groups.values())


def show_results(results: list[dict], score_label: str, terms: list[str]) -> None:
    """Each story (a link to its page) with its matching articles and a snippet of each."""
    groups = group_by_story(results)
    st.caption(f"{count(len(results), 'article')} in {count(len(groups), 'story')}")
    for group in groups:
        with st.container(border=True):
            st.page_link(
                "story_page.py", label=f"**{plain(group[0]['story_headline'])}**", icon=":material/article:",
                query_params={"story": group[0]["story_id"]},
            )
            for result in group:
                duplicate = f" · {plain(result['duplicate_kind'])} duplicate" if result["duplicate_of"] else ""
                st.markdown(f"{plain(result['title'])}  \n:gray[{emphasised(snippet(result['text'], terms), terms)}]")
                st.caption(
                    f"{plain(result['source_name'])} · seen {format_time(result['seen_at'])} · "
                    f"{score_label} {float(result['score']):.3g}{duplicate}"
                )


def keyword_search(source: Source, query: str) -> None:
    """Articles containing every word or quoted phrase of the query."""
    terms = parse_terms(query)
    if not terms:
        st.info("Type a word or a quoted phrase to search for.")
        return
    results = load(source, reads.read_keyword_search, tuple(terms), RESULT_LIMIT)
    if results is None:
        return
    if not results:
        # The terms come from the URL (?q=...): a shared link must not bring markup.
        st.info(f"No article contains {' and '.join(plain(repr(term)) for term in terms)}.")
        return
    show_results(results, "score", terms)


def semantic_search(source: Source, settings: Settings, query: str, min_similarity: float) -> None:
    """Articles whose stored vector is closest to the query's, embedded with the pipeline's model."""
    # Imported here: the model and torch load only when semantic search is used.
    from flows.embedding import embedding_model_key, get_embedder

    model = embedding_model_key(settings)
    vectors = load(source, reads.read_vectors, model, shared=True)
    if vectors is None:
        return
    article_ids, matrix = vectors
    if not article_ids:
        st.info(f"No article has a vector of the model {plain(model)} yet: run the pipeline with this model first.")
        return
    try:
        with st.spinner(f"Embedding the query with {plain(settings.model)}…"):
            query_vector = get_embedder(settings).embed([query])[0][0]
    except Exception as error:  # a model that cannot load: say so in one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        st.error(f"Cannot load the embedding model {plain(settings.model)}: {plain(first_line)}")
        return
    similarities = matrix @ query_vector
    best = [index for index in np.argsort(-similarities, kind="stable")[:RESULT_LIMIT] if similarities[index] >= min_similarity]
    if not best:
        st.info(f"No article is at least {min_similarity:.2f} similar to this query.")
        return
    articles = load(source, reads.read_articles, tuple(article_ids[index] for index in best), primary=False)
    if articles is None:
        return
    results = [
        {**articles[article_ids[index]], "score": float(similarities[index])}
        for index in best
        if article_ids[index] in articles
    ]
    show_results(results, "similarity", [])


def show(source: Source) -> None:
    """The page."""
    st.title("Search")
    # Bound to the URL (?mode=Semantic&q=...), so a search can be bookmarked and shared.
    mode = st.segmented_control(
        "Search by", ["Keyword", "Semantic"], default="Keyword", required=True, key="mode", bind="query-params"
    )
    query = (st.text_input(
        "Search articles", key="q", bind="query-params",
        placeholder='words or "a phrase"' if mode != "Semantic" else "describe an event",
    ) or "").strip()
    min_similarity = DEFAULT_MIN_SIMILARITY
    if mode == "Semantic":
        min_similarity = st.slider("Minimum similarity", 0.0, 1.0, DEFAULT_MIN_SIMILARITY, 0.05)
    if not query:
        st.caption(
            "Keyword search finds articles containing every word (quote a phrase to keep it together). "
            "Semantic search embeds the query with the pipeline's model and finds the closest articles."
        )
        return
    if mode == "Semantic":
        try:
            settings = load_settings()
        except ValidationError as error:
            st.error(plain(settings_error_message(error)))
            return
        semantic_search(source, settings, query, min_similarity)
    else:
        keyword_search(source, query)


show(source_from_arguments(sys.argv[1:]))
