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

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from extract.terms import TermWeights, cosine


@dataclass
class Story:
    """The clustering state of one story: sums over its original (non-duplicate) members."""

    story_id: str
    vector_sum: np.ndarray
    term_counts: Counter = field(default_factory=Counter)
    first_published_at: datetime | None = None
    last_published_at: datetime | None = None
    members: set[str] = field(default_factory=set)


@dataclass
class ClusterItem:
    """A new original article to place."""

    article_id: str
    vector: np.ndarray
    terms: Mapping[str, int]
    published_at: datetime | None = None


@dataclass(frozen=True)
class StoryAssignment:
    """Where an article went, how similar it is to that story (0–1), and if it opened the story."""

    story_id: str
    similarity: float
    opened: bool


@dataclass(frozen=True)
class ClusterRules:
    """Knobs of story assignment."""

    embedding_weight: float = 0.1
    threshold: float = 0.3
    candidates: int = 10
    window: timedelta = timedelta(days=7)
    refine_passes: int = 2
    merge_threshold: float | None = 0.5


def assign_stories(
    items: Sequence[ClusterItem],
    stories: Sequence[Story],
    weights: TermWeights,
    rules: ClusterRules = ClusterRules(),
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


class _Clustering:
    def __init__(self, stories: list[Story], weights: TermWeights, rules: ClusterRules):
        self.stories = stories
        self.weights = weights
        self.rules = rules
        self.opened: set[int] = set()
        self.where: dict[str, tuple[int, float]] = {}

    def _eligible(self, story: Story, item: ClusterItem) -> bool:
        if not story.members:
            return False
        if item.published_at is None or story.last_published_at is None:
            return True
        window = self.rules.window
        return story.first_published_at - window <= item.published_at <= story.last_published_at + window

    def _score(self, story: Story, item: ClusterItem, embedding_similarity: float) -> float:
        lexical = cosine(self.weights.vector(item.terms), self.weights.vector(story.term_counts))
        weight = self.rules.embedding_weight
        return weight * embedding_similarity + (1 - weight) * lexical

    def _similarity(self, index: int, item: ClusterItem) -> float:
        story = self.stories[index]
        embedding = float(story.vector_sum @ item.vector) / max(float(np.linalg.norm(story.vector_sum)), 1e-12)
        return self._score(story, item, embedding)

    def _best(self, item: ClusterItem) -> tuple[int, float]:
        """The most similar eligible story among the nearest few by embedding, and its score."""
        eligible = [i for i, story in enumerate(self.stories) if self._eligible(story, item)]
        best, best_score = -1, -1.0
        if eligible:
            sums = np.stack([self.stories[i].vector_sum for i in eligible])
            embedding = sums @ item.vector / np.maximum(np.linalg.norm(sums, axis=1), 1e-12)
            for rank in np.argsort(-embedding)[: self.rules.candidates]:
                index = eligible[rank]
                score = self._score(self.stories[index], item, float(embedding[rank]))
                if score > best_score:
                    best, best_score = index, score
        return best, best_score

    def place(self, item: ClusterItem) -> None:
        best, best_score = self._best(item)
        if best < 0 or best_score < self.rules.threshold:
            self.stories.append(Story(story_id="", vector_sum=np.zeros_like(item.vector)))
            best = len(self.stories) - 1
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
            summary = ClusterItem(
                "", story.vector_sum / max(float(np.linalg.norm(story.vector_sum)), 1e-12),
                Counter(story.term_counts), story.first_published_at,
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
        story.members.add(item.article_id)
        if item.published_at is not None:
            story.first_published_at = min(filter(None, (story.first_published_at, item.published_at)))
            story.last_published_at = max(filter(None, (story.last_published_at, item.published_at)))
        self.where[item.article_id] = (index, score)

    def remove(self, item: ClusterItem) -> None:
        index, _ = self.where.pop(item.article_id)
        story = self.stories[index]
        story.vector_sum = story.vector_sum - item.vector
        story.term_counts.subtract(item.terms)
        story.term_counts = +story.term_counts  # drop terms that reached zero
        story.members.discard(item.article_id)

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
