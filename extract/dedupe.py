"""Exact and near-duplicate detection: copies, light edits and rewrites of the same article.

Four kinds of evidence, strongest first:

- ``url``: the same canonical URL;
- ``exact``: the same normalised text;
- ``copy``: word 5-shingle Jaccard at or above `copy_jaccard` (syndicated copies, light edits);
- ``rewrite``: a paraphrase — the whole-article embeddings are nearly identical *and* the two
  articles name the same people, places and numbers. Another article about the same event
  reads alike too but brings names and numbers of its own, so it fails the second test.

Duplicates always point at the earliest copy (the root of their group), never at another copy.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from extract.terms import overlap


@dataclass
class DedupeItem:
    """What dedupe needs to know of one article; `duplicate_of` is set for stored copies."""

    article_id: str
    canonical_url: str
    text_hash: str
    text: str
    vector: np.ndarray
    terms: Mapping[str, int]
    duplicate_of: str | None = None


@dataclass(frozen=True)
class DuplicateMatch:
    """An article's earliest copy, what kind of duplicate it is, and how similar (0–1)."""

    original_id: str
    kind: str
    similarity: float


@dataclass(frozen=True)
class DedupeRules:
    """Thresholds of the near-duplicate tests."""

    shingle_size: int = 5
    copy_jaccard: float = 0.5
    rewrite_similarity: float = 0.93
    rewrite_term_overlap: float = 0.45
    candidate_similarity: float = 0.8
    candidates: int = 20


_WORD = re.compile(r"\w+")


def shingles(text: str, size: int = 5) -> set[int]:
    """Hashes of the word `size`-grams of a text (lower-cased)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i : i + size])) for i in range(len(words) - size + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    """Jaccard similarity of two sets (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass
class _Pool:
    items: list[DedupeItem]
    rules: DedupeRules
    _shingles: dict[int, set[int]] = field(default_factory=dict)

    def shingles_of(self, position: int) -> set[int]:
        if position not in self._shingles:
            self._shingles[position] = shingles(self.items[position].text, self.rules.shingle_size)
        return self._shingles[position]


def find_duplicates(
    new: Sequence[DedupeItem], history: Sequence[DedupeItem], rules: DedupeRules = DedupeRules()
) -> dict[str, DuplicateMatch]:
    """Find which new articles duplicate a stored one or an earlier new one.

    Args:
        new: The batch's articles, oldest first.
        history: Stored articles that may be originals (recent ones and exact matches), oldest
            first; their `duplicate_of` is respected so links always go to a group's root.
        rules: Thresholds.

    Returns:
        A match for each new article that is a duplicate, keyed by its article_id.
    """
    pool = _Pool([*history, *new], rules)
    offset = len(history)
    root = {item.article_id: item.duplicate_of or item.article_id for item in history}
    position_of = {item.article_id: i for i, item in enumerate(pool.items)}
    by_url: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    for item in history:
        by_url.setdefault(item.canonical_url, root[item.article_id])
        by_hash.setdefault(item.text_hash, root[item.article_id])

    vectors = np.stack([item.vector for item in pool.items]) if pool.items else np.zeros((0, 1))
    matches: dict[str, DuplicateMatch] = {}
    for index, item in enumerate(new):
        position = offset + index
        match = None
        if item.canonical_url in by_url:
            match = DuplicateMatch(by_url[item.canonical_url], "url", 1.0)
        elif item.text_hash in by_hash:
            match = DuplicateMatch(by_hash[item.text_hash], "exact", 1.0)
        elif position:
            match = _near_duplicate(pool, vectors, position, root, position_of)
        if match:
            matches[item.article_id] = match
            root[item.article_id] = match.original_id
        else:
            root[item.article_id] = item.article_id
        by_url.setdefault(item.canonical_url, root[item.article_id])
        by_hash.setdefault(item.text_hash, root[item.article_id])
    return matches


def _near_duplicate(pool: _Pool, vectors: np.ndarray, position: int, root, position_of) -> DuplicateMatch | None:
    rules = pool.rules
    item = pool.items[position]
    similarities = vectors[:position] @ item.vector
    ranked = np.argsort(-similarities)[: rules.candidates]
    found: list[DuplicateMatch] = []
    for candidate in ranked:
        similarity = float(similarities[candidate])
        if similarity < rules.candidate_similarity:
            break
        other = pool.items[candidate]
        copy = jaccard(pool.shingles_of(position), pool.shingles_of(int(candidate)))
        if copy >= rules.copy_jaccard:
            found.append(DuplicateMatch(root[other.article_id], "copy", copy))
        elif similarity >= rules.rewrite_similarity and overlap(item.terms, other.terms) >= rules.rewrite_term_overlap:
            found.append(DuplicateMatch(root[other.article_id], "rewrite", similarity))
    if not found:
        return None
    # Several copies may match; all of them lead back to the earliest original.
    return min(found, key=lambda match: position_of[match.original_id])
