"""Online story clustering: each new article joins the most similar recent story or opens one.

An article's similarity to a story blends two kinds of evidence:

- the cosine between the article's embedding and the story's mean embedding (what kind of event);
- the cosine between the article's tf-idf entity vector and the story's summed entity vector
  (which event: names, places and numbers).

New articles are placed one by one in time order; then each new article is taken out and placed
again, a few times, against the stories as they now stand, so that the order in which a batch
arrives matters less. Finally each story the batch opened is compared as a whole with the other
stories and folded into one that is similar enough (a stricter threshold: summed evidence
overlaps more). Stories already stored keep their members: only new articles move, and history
is never re-clustered.
"""

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from extract.terms import TermWeights


@dataclass
class Story:
    """The clustering state of one story: sums over its original (non-duplicate) members."""

    story_id: str
    vector_sum: np.ndarray
    term_counts: Counter = field(default_factory=Counter)
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    members: set[str] = field(default_factory=set)


@dataclass
class ClusterItem:
    """A new original article to place.

    `candidates` names the stored stories it may join (those of its nearest stored articles);
    None allows every story. `batch_neighbours` names its nearest articles of the same batch:
    it may also join the stories they are in at the time; None allows every story the batch
    opened.
    """

    article_id: str
    vector: np.ndarray
    terms: Mapping[str, int]
    seen_at: datetime | None = None  # published, else ingested
    candidates: frozenset[str] | None = None
    batch_neighbours: frozenset[str] | None = None


@dataclass(frozen=True)
class StoryAssignment:
    """Where an article went, how similar it is to that story (0–1), and if it opened the story."""

    story_id: str
    similarity: float
    opened: bool


@dataclass(frozen=True)
class ClusterRules:
    """Knobs of story assignment (the tunable ones are settings: `Settings.cluster_rules`)."""

    embedding_weight: float
    threshold: float
    window: timedelta
    refine_passes: int
    merge_threshold: float | None
    candidates: int = 10


def assign_stories(
    items: Sequence[ClusterItem],
    stories: Sequence[Story],
    weights: TermWeights,
    rules: ClusterRules,
) -> dict[str, StoryAssignment]:
    """Assign new articles to stored stories or to new ones.

    Args:
        items: New original articles, oldest first.
        stories: Recent stored stories (their state is updated in place as members join).
        weights: Term weights covering stored articles and this batch.
        rules: Thresholds and window.

    Returns:
        An assignment per article_id. A new story takes the id of its earliest member.
    """
    state = _Clustering(list(stories), weights, rules)
    for item in items:
        state.place(item)
    for _ in range(rules.refine_passes):
        state.refine(items)
    if rules.merge_threshold is not None and state.merge_new_stories(items):
        state.refine(items)
    return state.assignments(items)


def _seconds(moment: datetime | None) -> float:
    return np.nan if moment is None else moment.timestamp()


class _Clustering:
    """Stories as rows of arrays (vector sums, norms, times, sizes), so a placement is one product."""

    def __init__(self, stories: list[Story], weights: TermWeights, rules: ClusterRules):
        self.stories: list[Story] = []
        self.weights = weights
        self.rules = rules
        self.window = rules.window.total_seconds()
        self.opened: set[int] = set()
        self.where: dict[str, tuple[int, float]] = {}
        self.row_of: dict[str, int] = {}
        dimensions = len(stories[0].vector_sum) if stories else 0
        self.sums = np.zeros((max(16, len(stories) * 2), dimensions), dtype=np.float64)
        self.norms = np.zeros(len(self.sums))
        self.first = np.full(len(self.sums), np.nan)
        self.last = np.full(len(self.sums), np.nan)
        self.sizes = np.zeros(len(self.sums), dtype=np.int64)
        self._idf: dict[str, float] = {}
        self._story_terms: dict[int, dict[str, float]] = {}
        for story in stories:
            self._append(story)

    # --- the arrays ---

    def _append(self, story: Story) -> int:
        row = len(self.stories)
        if row == len(self.sums) or self.sums.shape[1] != len(story.vector_sum):
            grown = max(16, 2 * len(self.sums))
            sums = np.zeros((grown, len(story.vector_sum)))
            if row:
                sums[:row] = self.sums[:row]
            self.sums = sums
            self.norms, self.first, self.last = (np.resize(a, grown) for a in (self.norms, self.first, self.last))
            self.sizes = np.resize(self.sizes, grown)
        self.stories.append(story)
        if story.story_id:
            self.row_of[story.story_id] = row
        self._sync_row(row)
        return row

    def _sync_row(self, row: int) -> None:
        story = self.stories[row]
        self.sums[row] = story.vector_sum
        self.norms[row] = max(float(np.linalg.norm(story.vector_sum)), 1e-12)
        self.first[row] = _seconds(story.first_seen_at)
        self.last[row] = _seconds(story.last_seen_at)
        self.sizes[row] = len(story.members)

    def _rows_for(self, item: ClusterItem) -> np.ndarray:
        if item.candidates is None:
            rows = np.arange(len(self.stories))
        else:
            stored = [self.row_of[story_id] for story_id in item.candidates if story_id in self.row_of]
            if item.batch_neighbours is None:
                batch = self.opened
            else:
                batch = {self.where[a][0] for a in item.batch_neighbours if a in self.where}
            rows = np.fromiter(sorted({*stored, *batch}), dtype=np.int64)
        if not len(rows):
            return rows
        eligible = self.sizes[rows] > 0
        when = _seconds(item.seen_at)
        if not np.isnan(when):
            first, last = self.first[rows], self.last[rows]
            timed = ~np.isnan(last)
            inside = (first - self.window <= when) & (when <= last + self.window)
            eligible &= ~timed | inside
        return rows[eligible]

    # --- scores ---

    def _weight(self, term: str, count: float) -> float:
        if term not in self._idf:
            self._idf[term] = self.weights.idf(term)
        return (1 + math.log(count)) * self._idf[term]

    def _term_vector(self, counts: Mapping[str, float]) -> dict[str, float]:
        return {term: self._weight(term, count) for term, count in counts.items() if count > 0}

    def _story_term_vector(self, row: int) -> tuple[dict[str, float], float]:
        """A story's tf-idf weights and their norm, kept up to date as members come and go."""
        if row not in self._story_terms:
            vector = self._term_vector(self.stories[row].term_counts)
            self._story_terms[row] = [vector, sum(weight * weight for weight in vector.values())]
        vector, squared = self._story_terms[row]
        return vector, math.sqrt(max(squared, 0.0))

    def _update_story_terms(self, row: int, terms: Mapping[str, int]) -> None:
        if row not in self._story_terms:
            return
        entry = self._story_terms[row]
        vector, counts = entry[0], self.stories[row].term_counts
        for term in terms:
            old = vector.pop(term, 0.0)
            count = counts.get(term, 0)
            new = self._weight(term, count) if count > 0 else 0.0
            if new:
                vector[term] = new
            entry[1] += new * new - old * old

    def _score(self, row: int, item_terms: dict[str, float], embedding_similarity: float) -> float:
        story_terms, story_norm = self._story_term_vector(row)
        item_norm = math.sqrt(sum(weight * weight for weight in item_terms.values()))
        dot = sum(weight * story_terms.get(term, 0.0) for term, weight in item_terms.items())
        lexical = dot / (item_norm * story_norm) if item_norm > 0 and story_norm > 1e-9 else 0.0
        weight = self.rules.embedding_weight
        return weight * embedding_similarity + (1 - weight) * lexical

    def _similarity(self, row: int, item: ClusterItem) -> float:
        embedding = float(self.sums[row] @ item.vector) / self.norms[row]
        return self._score(row, self._term_vector(item.terms), embedding)

    def _best(self, item: ClusterItem) -> tuple[int, float]:
        """The most similar eligible story among the nearest few by embedding, and its score."""
        rows = self._rows_for(item)
        best, best_score = -1, -1.0
        if len(rows):
            embedding = self.sums[rows] @ item.vector / self.norms[rows]
            nearest = np.argsort(-embedding, kind="stable")[: self.rules.candidates]
            item_terms = self._term_vector(item.terms)
            for rank in nearest:
                row = int(rows[rank])
                score = self._score(row, item_terms, float(embedding[rank]))
                if score > best_score:
                    best, best_score = row, score
        return best, best_score

    # --- moves ---

    def place(self, item: ClusterItem) -> None:
        best, best_score = self._best(item)
        if best < 0 or best_score < self.rules.threshold:
            best = self._append(Story(story_id="", vector_sum=np.zeros_like(item.vector, dtype=np.float64)))
            self.opened.add(best)
            best_score = 1.0
        self._add(best, item, best_score)

    def refine(self, items: Sequence[ClusterItem]) -> None:
        for item in items:
            self.remove(item)
            self.place(item)

    def merge_new_stories(self, items: Sequence[ClusterItem]) -> bool:
        """Fold each story opened by this batch into the most similar other story, if similar enough.

        A story's summed evidence is steadier than a single article's, so two halves of one
        event that the article-by-article pass kept apart are recognised here.
        """
        by_id = {item.article_id: item for item in items}
        merged = False
        opened = sorted((i for i in self.opened if self.stories[i].members), key=lambda i: len(self.stories[i].members))
        for index in opened:
            story = self.stories[index]
            if not story.members:
                continue
            members = [by_id[article_id] for article_id in sorted(story.members)]
            candidates = batch_neighbours = None
            if all(member.candidates is not None for member in members):
                candidates = frozenset().union(*(member.candidates for member in members))
            if all(member.batch_neighbours is not None for member in members):
                batch_neighbours = frozenset().union(*(member.batch_neighbours for member in members)) - story.members
            summary = ClusterItem(
                "", story.vector_sum / max(float(np.linalg.norm(story.vector_sum)), 1e-12),
                Counter(story.term_counts), story.first_seen_at, candidates, batch_neighbours,
            )
            scores = [self.where[member.article_id][1] for member in members]
            for member in members:
                self.remove(member)
            target, score = self._best(summary)
            if target >= 0 and score >= self.rules.merge_threshold:
                merged = True
                for member in members:
                    self._add(target, member, self._similarity(target, member))
            else:
                for member, own in zip(members, scores):
                    self._add(index, member, own)
        return merged

    def _add(self, index: int, item: ClusterItem, score: float) -> None:
        story = self.stories[index]
        story.vector_sum = story.vector_sum + item.vector
        story.term_counts.update(item.terms)
        self._update_story_terms(index, item.terms)
        story.members.add(item.article_id)
        if item.seen_at is not None:
            story.first_seen_at = min(filter(None, (story.first_seen_at, item.seen_at)))
            story.last_seen_at = max(filter(None, (story.last_seen_at, item.seen_at)))
        self._sync_row(index)
        self.where[item.article_id] = (index, score)

    def remove(self, item: ClusterItem) -> None:
        index, _ = self.where.pop(item.article_id)
        story = self.stories[index]
        story.vector_sum = story.vector_sum - item.vector
        story.term_counts.subtract(item.terms)
        story.term_counts = +story.term_counts  # drop terms that reached zero
        self._update_story_terms(index, item.terms)
        story.members.discard(item.article_id)
        self._sync_row(index)

    def assignments(self, items: Sequence[ClusterItem]) -> dict[str, StoryAssignment]:
        for item in items:  # items are oldest first, so the first seen names the story
            index, _ = self.where[item.article_id]
            if not self.stories[index].story_id:
                self.stories[index].story_id = item.article_id
        return {
            item.article_id: StoryAssignment(
                self.stories[index].story_id, round(score, 6), index in self.opened
            )
            for item in items
            for index, score in [self.where[item.article_id]]
        }
