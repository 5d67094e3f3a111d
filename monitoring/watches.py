"""Which new articles a watch matches: its keyword query over title and text, or its description's closeness.

A keyword watch (`--query`) matches an article whose title or text satisfies the query, with
the semantics of the search index (`extract.query`). A semantic watch (`--like`) matches an
article whose vector (the one stories are built on: its lead, the mean of its first
`NEWSWATCH_EMBED_LEAD_CHUNKS` chunks, not the whole-article vector) is at least `threshold`
cosine-similar to the vector of the watch's description, embedded with the same model. Evaluating a batch costs one inverted index
of its texts and one matrix product, however many watches there are.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from extract.query import BatchMatcher, Query


@dataclass(frozen=True)
class WatchRule:
    """What a watch looks for: a parsed keyword query, or the unit vector of a description."""

    watch_id: int
    query: Query | None = None
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class WatchHit:
    """A watch matched an article (by key); `similarity` is the cosine for a semantic watch."""

    watch_id: int
    article_key: str
    similarity: float | None = None


def match_articles(
    rules: Sequence[WatchRule],
    documents: Sequence[tuple[str, str | None, str]],
    vectors: np.ndarray | None,
    threshold: float,
) -> list[WatchHit]:
    """Every (watch, article) match in a batch.

    Args:
        rules: The watches.
        documents: The batch's articles as (key, title, text).
        vectors: Their unit vectors, one row per document (needed only for semantic watches).
        threshold: The cosine from which a semantic watch matches.

    Returns:
        The matches, by watch then in document order.
    """
    hits: list[WatchHit] = []
    keyword = [rule for rule in rules if rule.query is not None]
    if keyword and documents:
        matcher = BatchMatcher(documents)
        order = {key: position for position, (key, _, _) in enumerate(documents)}
        for rule in keyword:
            hits += [WatchHit(rule.watch_id, key) for key in sorted(matcher.matches(rule.query), key=order.__getitem__)]
    semantic = [rule for rule in rules if rule.query is None and rule.vector is not None]
    if semantic and documents and vectors is not None and len(vectors):
        similarities = np.asarray(vectors, dtype=np.float32) @ np.stack([rule.vector for rule in semantic]).astype(np.float32).T
        for column, rule in enumerate(semantic):
            for row in np.flatnonzero(similarities[:, column] >= threshold):
                hits.append(WatchHit(rule.watch_id, documents[row][0], float(similarities[row, column])))
    return hits
