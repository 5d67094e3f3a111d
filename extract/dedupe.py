"""Exact and near-duplicate detection: copies, light edits and rewrites of the same article.

Four kinds of evidence, strongest first:

- ``url``: the same canonical URL;
- ``exact``: the same normalised text;
- ``copy``: word 5-shingle Jaccard at or above `copy_jaccard` (syndicated copies, light edits);
- ``rewrite``: a paraphrase, condensed or polished version. A pair whose everyday vectors are
  close (`candidate_similarity`, a loose first gate) is scored by the rewrite model
  (`extract.rewrites`: whole-article cosine, and how much of the shorter text's names, numbers,
  rarer words and word pairs and triples the longer one holds); its probability must reach
  `rewrite_probability`, and the pair must stand out: each is clearly closer to the other than
  to any third article outside their own copies (the margin criterion used to mine parallel
  sentences, applied to articles). Whole articles nearly identical in meaning
  (`rewrite_similarity`) that name mostly the same people, places and numbers
  (`rewrite_term_overlap`) are rewrites too, whatever the model says, if they stand out. Other articles about the same event read alike too, but they
  bring names, numbers and wording of their own, and when many reports of one event resemble
  each other no single pair stands out.

Duplicates always point at the earliest copy (the root of their group), never at another copy.
A rewrite's score is the model's probability; a copy's is its Jaccard.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from extract.rewrites import RewriteModel, TextProfile, evidence, load_model, profile
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
    rewrite_probability: float
    rewrite_margin: float
    # Whole articles this close in meaning, naming mostly the same people, places and numbers, are
    # rewrites whatever the model says (a free rewrite may drop most of the numbers).
    rewrite_similarity: float = 0.93
    rewrite_term_overlap: float = 0.5
    # Everyday-vector cosine from which a pair is compared at all (copies and rewrites).
    candidate_similarity: float = 0.7
    # True when the everyday vectors are of the articles' leads: a possible rewrite is then
    # scored with whole-article vectors (asked for through `find_duplicates`' `whole_vector`).
    lead_vectors: bool = False
    shingle_size: int = 5
    candidates: int = 20
    # Rivals whose lead cosine to either side is this far under the pair's whole cosine minus
    # the margin cannot beat it; the closer ones are compared with whole vectors too.
    rival_slack: float = 0.05
    language: str = "en"  # of the rarer-word list the rewrite evidence uses
    model: RewriteModel | None = None  # None: the packaged rewrite model


@dataclass
class DedupeCounts:
    """What the near-duplicate tests cost: pairs compared, pairs the rewrite model scored, rewrites found."""

    compared: int = 0
    scored: int = 0
    rewrites: int = 0


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
    counts: DedupeCounts | None = None,
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
        counts: Filled with what the tests cost, when given.

    Returns:
        A match for each new article that is a duplicate, keyed by its article_id.
    """
    pool = _Pool([*history, *new], rules, len(history), whole_vector, counts if counts is not None else DedupeCounts())
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
# How far under `rewrite_similarity` two leads may be for their whole articles to reach it.
NEAR_LEADS = 0.05
# How much higher than their leads' cosine two whole articles' may be, for the evidence's bound.
WHOLE_OVER_LEAD = 0.1


class _Pool:
    """Stored and new articles, their similarity matrix, and the duplicate groups found so far."""

    def __init__(self, items: list[DedupeItem], rules: DedupeRules, offset: int = 0, whole_vector=None,
                 counts: DedupeCounts | None = None):
        self.items = items
        self.counts = counts or DedupeCounts()
        self.model = rules.model or load_model()
        self._profiles: dict[int, TextProfile] = {}
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

    def profile_of(self, position: int) -> TextProfile:
        if position not in self._profiles:
            self._profiles[position] = profile(self.items[position].text, self.rules.language)
        return self._profiles[position]

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

    def _stands_out(self, position: int, candidate: int, similarity: float, rows: np.ndarray, similarities: np.ndarray,
                    family: bool = True) -> bool:
        """Whether no third article comes within the margin of the pair's whole cosine, to either side.

        The candidate's own copies do not count, nor does a third article the rewrite model
        takes for a rewrite of either side (with `family`: the pair itself is one by the model):
        two rewrites of one article are close to it and to each other, and belong to its family. With lead vectors, only the rivals
        whose lead cosine to either side comes near the bar are compared whole.
        """
        rules = self.rules
        group = self.groups.get(self.root[self.items[candidate].article_id], set())
        candidate_similarities = self.vectors[rows] @ self.items[candidate].vector
        bar = similarity - rules.rewrite_margin
        near = bar - rules.rival_slack if rules.lead_vectors else bar
        rivals = [int(rows[i]) for i in range(len(rows))
                  if int(rows[i]) not in (position, candidate) and int(rows[i]) not in group
                  and max(similarities[i], candidate_similarities[i]) > near]
        if not rivals:
            return True
        if rules.lead_vectors:
            wholes = self.wholes([position, candidate, *rivals])
        else:
            wholes = self.vectors[[position, candidate, *rivals]]
        for rival, cosines in zip(rivals, wholes[2:] @ wholes[:2].T):
            if max(cosines) <= bar:
                continue
            related = family and any(
                self.model.probability(evidence(self.profile_of(rival), self.profile_of(side), float(cosine)))
                >= rules.rewrite_probability
                for side, cosine in ((position, cosines[0]), (candidate, cosines[1]))
            )
            if not related:
                return False
        return True

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
            original = self.root[self.items[candidate].article_id]
            self.counts.compared += 1
            copy = jaccard(self.shingles_of(position), self.shingles_of(candidate))
            if copy >= rules.copy_jaccard:
                found.append(DuplicateMatch(original, "copy", copy))
                continue
            pair = evidence(self.profile_of(position), self.profile_of(candidate), similarity)
            names = overlap(item.terms, self.items[candidate].terms) >= rules.rewrite_term_overlap
            if rules.lead_vectors:
                # The whole articles decide, not their leads; a pair that could not pass even with
                # whole articles much closer than their leads is not embedded whole.
                near = names and similarity >= rules.rewrite_similarity - NEAR_LEADS
                hope = min(1.0, similarity + WHOLE_OVER_LEAD)
                if not near and self.model.probability(np.concatenate([[hope], pair[1:]])) < rules.rewrite_probability:
                    continue
                wholes = self.wholes([position, candidate])
                pair[0] = float(wholes[0] @ wholes[1])
            self.counts.scored += 1
            probability = self.model.probability(pair)
            if probability < rules.rewrite_probability and not (names and pair[0] >= rules.rewrite_similarity):
                continue
            # Only a pair the model takes for a rewrite may have a family of rewrites around it.
            if self._stands_out(position, candidate, float(pair[0]), rows, similarities,
                                family=probability >= rules.rewrite_probability):
                found.append(DuplicateMatch(original, "rewrite", probability))
        if not found:
            return None
        # Copy evidence beats a paraphrase verdict; among equals the earliest original wins.
        match = min(found, key=lambda match: (_KIND_STRENGTH[match.kind], self.position_of.get(match.original_id, -1)))
        self.counts.rewrites += match.kind == "rewrite"
        return match
