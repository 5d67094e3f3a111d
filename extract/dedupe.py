"""Exact and near-duplicate detection: copies, light edits and rewrites of the same article.

Four kinds of evidence, strongest first:

- ``url``: the same canonical URL;
- ``exact``: the same normalised text;
- ``copy``: word 5-shingle Jaccard at or above `copy_jaccard` (syndicated copies, light edits);
- ``rewrite``: a paraphrase. Three tests must all pass: the whole-article embeddings are nearly
  identical; the two articles name mostly the same people, places and numbers; and the pair
  stands out — each is clearly closer to the other than to any third article (outside their
  own copies). Other articles about the same event read alike too, but they bring names and
  numbers of their own, and when many reports of one event resemble each other no single pair
  stands out (the margin criterion used to mine parallel sentences, applied to articles).

Duplicates always point at the earliest copy (the root of their group), never at another copy.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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
    neighbours: frozenset[str] | None = None  # for new articles: the stored ones worth comparing (None: all)
    batch_neighbours: frozenset[str] | None = None  # for new articles: the batch's ones worth comparing (None: all)


@dataclass(frozen=True)
class DuplicateMatch:
    """An article's earliest copy, what kind of duplicate it is, and how similar (0–1)."""

    original_id: str
    kind: str
    similarity: float


@dataclass(frozen=True)
class DedupeRules:
    """Thresholds of the near-duplicate tests (the tunable ones are settings: `Settings.dedupe_rules`)."""

    copy_jaccard: float
    rewrite_similarity: float
    rewrite_term_overlap: float
    rewrite_margin: float
    # With everyday vectors of the articles' leads: the lead cosine from which a pair is checked
    # with whole-article vectors (None: the vectors are whole, and `rewrite_similarity` decides).
    rewrite_gate: float | None = None
    shingle_size: int = 5
    candidate_similarity: float = 0.8
    candidates: int = 20
    # Rivals whose lead cosine to either side is this far under the pair's whole cosine minus
    # the margin cannot beat it; the closer ones are compared with whole vectors too.
    rival_slack: float = 0.05


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


def find_duplicates(
    new: Sequence[DedupeItem],
    history: Sequence[DedupeItem],
    rules: DedupeRules,
    whole_vector: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
) -> dict[str, DuplicateMatch]:
    """Find which new articles duplicate a stored one or an earlier new one.

    Args:
        new: The batch's articles, oldest first.
        history: Stored articles that may be originals (recent ones and exact matches), oldest
            first; their `duplicate_of` is respected so links always go to a group's root.
        rules: Thresholds.
        whole_vector: When the items' vectors are of their leads: gives the whole-article vectors
            of these article ids (computing them if need be), asked only for possible rewrites
            and their close rivals. None: the items' vectors are whole.

    Returns:
        A match for each new article that is a duplicate, keyed by its article_id.
    """
    pool = _Pool([*history, *new], rules, len(history), whole_vector)
    offset = len(history)
    for item in history:
        pool.link(item.article_id, item.duplicate_of or item.article_id)
    by_url: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    for item in history:
        by_url.setdefault(item.canonical_url, pool.root[item.article_id])
        by_hash.setdefault(item.text_hash, pool.root[item.article_id])

    matches: dict[str, DuplicateMatch] = {}
    for index, item in enumerate(new):
        position = offset + index
        match = None
        if item.canonical_url in by_url:
            match = DuplicateMatch(by_url[item.canonical_url], "url", 1.0)
        elif item.text_hash in by_hash:
            match = DuplicateMatch(by_hash[item.text_hash], "exact", 1.0)
        elif position:
            match = pool.near_duplicate(position)
        if match:
            matches[item.article_id] = match
        pool.link(item.article_id, match.original_id if match else item.article_id)
        by_url.setdefault(item.canonical_url, pool.root[item.article_id])
        by_hash.setdefault(item.text_hash, pool.root[item.article_id])
    return matches


_KIND_STRENGTH = {"copy": 0, "rewrite": 1}


class _Pool:
    """Stored and new articles, their similarity matrix, and the duplicate groups found so far."""

    def __init__(self, items: list[DedupeItem], rules: DedupeRules, offset: int = 0, whole_vector=None):
        self.items = items
        self.whole_vector = whole_vector
        self._whole: dict[int, np.ndarray] = {}
        self.offset = offset  # where the new articles start
        self.rules = rules
        self.position_of = {item.article_id: i for i, item in enumerate(items)}
        self.vectors = np.stack([item.vector for item in items]) if items else np.zeros((0, 1), np.float32)
        self.root: dict[str, str] = {}
        self.groups: dict[str, set[int]] = {}
        self._shingles: dict[int, set[int]] = {}

    def link(self, article_id: str, root: str) -> None:
        self.root[article_id] = root
        self.groups.setdefault(root, set()).add(self.position_of[article_id])

    def wholes(self, positions) -> np.ndarray:
        """The whole-article vectors of these pool positions, one row each (asked for once each)."""
        missing = [position for position in dict.fromkeys(positions) if position not in self._whole]
        if missing:
            found = self.whole_vector([self.items[position].article_id for position in missing])
            for position in missing:
                self._whole[position] = found[self.items[position].article_id]
        return np.stack([self._whole[position] for position in positions])

    def shingles_of(self, position: int) -> set[int]:
        if position not in self._shingles:
            self._shingles[position] = shingles(self.items[position].text, self.rules.shingle_size)
        return self._shingles[position]

    def _rows(self, position: int) -> np.ndarray:
        """Pool positions an article is compared with: its stored and batch neighbours (or all of either)."""
        item = self.items[position]
        if item.neighbours is None:
            stored = range(self.offset)
        else:
            stored = [self.position_of[a] for a in item.neighbours if self.position_of.get(a, self.offset) < self.offset]
        if item.batch_neighbours is None:
            batch = range(self.offset, len(self.items))
        else:
            batch = [position, *(self.position_of[a] for a in item.batch_neighbours if self.position_of.get(a, -1) >= self.offset)]
        return np.array(sorted({*stored, *batch}), dtype=np.int64)

    @staticmethod
    def _runner_up(rows: np.ndarray, similarities: np.ndarray, excluded) -> float:
        """The highest similarity among rows that are not `excluded(position)`."""
        for other in np.argsort(-similarities, kind="stable"):
            if not excluded(int(rows[other])):
                return float(similarities[other])
        return -1.0

    def _stands_out(self, position: int, candidate: int, similarity: float, rows: np.ndarray, similarities: np.ndarray) -> bool:
        group = self.groups.get(self.root[self.items[candidate].article_id], set())

        def excluded(other: int) -> bool:  # the pair itself and the candidate's own copies
            return other == position or other == candidate or other in group

        candidate_similarities = self.vectors[rows] @ self.items[candidate].vector
        runner_up = max(
            self._runner_up(rows, similarities, excluded), self._runner_up(rows, candidate_similarities, excluded)
        )
        return similarity - runner_up >= self.rules.rewrite_margin

    def _stands_out_whole(self, position: int, candidate: int, similarity: float, rows: np.ndarray,
                          similarities: np.ndarray) -> bool:
        """`_stands_out` with whole-article vectors, for a pair whose vectors are their leads.

        Only the rivals whose lead cosine to either side comes near the bar are compared whole.
        """
        group = self.groups.get(self.root[self.items[candidate].article_id], set())
        candidate_similarities = self.vectors[rows] @ self.items[candidate].vector
        near = similarity - self.rules.rewrite_margin - self.rules.rival_slack
        rivals = [int(rows[i]) for i in range(len(rows))
                  if int(rows[i]) not in (position, candidate) and int(rows[i]) not in group
                  and max(similarities[i], candidate_similarities[i]) >= near]
        if not rivals:
            return True
        wholes = self.wholes([position, candidate, *rivals])
        runner_up = float(np.max(wholes[2:] @ wholes[:2].T))
        return similarity - runner_up >= self.rules.rewrite_margin

    def near_duplicate(self, position: int) -> DuplicateMatch | None:
        rules = self.rules
        item = self.items[position]
        # Every article compared counts as a rival for the margin, even later ones in the batch.
        rows = self._rows(position)
        similarities = self.vectors[rows] @ item.vector
        earlier = np.flatnonzero(rows < position)
        found: list[DuplicateMatch] = []
        for at in earlier[np.argsort(-similarities[earlier], kind="stable")][: rules.candidates]:
            candidate = int(rows[at])
            similarity = float(similarities[at])
            if similarity < rules.candidate_similarity:
                break
            other = self.items[candidate]
            original = self.root[other.article_id]
            copy = jaccard(self.shingles_of(position), self.shingles_of(candidate))
            if copy >= rules.copy_jaccard:
                found.append(DuplicateMatch(original, "copy", copy))
            elif self.whole_vector is None:
                if (
                    similarity >= rules.rewrite_similarity
                    and overlap(item.terms, other.terms) >= rules.rewrite_term_overlap
                    and self._stands_out(position, candidate, similarity, rows, similarities)
                ):
                    found.append(DuplicateMatch(original, "rewrite", similarity))
            elif similarity >= rules.rewrite_gate and overlap(item.terms, other.terms) >= rules.rewrite_term_overlap:
                # A possible rewrite: the whole articles decide, not their leads.
                pair = self.wholes([position, candidate])
                whole = float(pair[0] @ pair[1])
                if whole >= rules.rewrite_similarity and self._stands_out_whole(position, candidate, whole, rows, similarities):
                    found.append(DuplicateMatch(original, "rewrite", whole))
        if not found:
            return None
        # Copy evidence beats a paraphrase verdict; among equals the earliest original wins.
        return min(found, key=lambda match: (_KIND_STRENGTH[match.kind], self.position_of.get(match.original_id, -1)))
