"""The ingest pipeline's stages as plain functions: prepare → embed → dedupe and cluster → load.

(The embedding stage itself is `flows.embedding`.)

The Prefect flow in `flows.ingest` wraps each stage in a task; tests and benchmarks can call
them directly. Each stage that needs the warehouse opens it only for as long as it reads or
writes, so other processes can query between stages.
"""

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extract.cluster import ClusterItem, Story, StoryAssignment, assign_stories
from extract.content import EXTRACTOR, Article, text_hash
from extract.dedupe import DedupeCounts, DedupeItem, find_duplicates
from extract.feeds import canonicalize_url
from extract.neighbours import nearest_in_batch
from extract.terms import TermWeights, extract_terms
from flows.embedding import (
    embedding_model_key, lead_chunks, stored_or_embed, stored_whole_vectors, whole_model_key, whole_vectors,
)
from flows.settings import Settings
from flows.translations import find_translations
from warehouse.connection import open_warehouse
from warehouse.load import ArticleRow, EmbeddingRow, LoadBatch, LoadResult, PageRow, load_batch
from warehouse.lookups import stored_urls, stored_vectors, story_history, term_statistics
from warehouse.vector_index import VectorIndex

if TYPE_CHECKING:
    from flows.polling import FetchedArticle

logger = logging.getLogger(__name__)


@dataclass
class PreparedArticle:
    """An article with its keys, terms and (once embedded) vector."""

    article: Article
    article_id: str
    canonical_url: str
    text_hash: str
    terms: Counter
    seen_at: datetime  # published, else ingested
    vector: np.ndarray | None = None  # the everyday vector (of the lead)
    whole_vector: np.ndarray | None = None  # known when the lead is the whole text


@dataclass
class Verdicts:
    """Duplicate links and story assignments of a batch, keyed by article_id."""

    duplicates: dict = field(default_factory=dict)
    stories: dict = field(default_factory=dict)
    embeddings: list = field(default_factory=list)  # whole-article vectors a verdict needed, to store

    @property
    def new_stories(self) -> int:
        return len({a.story_id for a in self.stories.values() if a.opened})


def article_id_for(url: str) -> str:
    """Stable primary key of an article: a hash of its URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def canonical_url(url: str) -> str:
    """The URL without tracking parameters, fragments or default ports (web URLs only)."""
    return canonicalize_url(url) if url.startswith(("http://", "https://")) else url


def prepare_articles(
    articles: list[Article], db: Path, ingested_at: datetime, settings: Settings
) -> tuple[list[PreparedArticle], int]:
    """Key the articles, drop those already stored or repeated in the batch, oldest first.

    Returns:
        The new articles, and how many were already stored.
    """
    unique = {article.url: article for article in articles}
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        known = stored_urls(connection, list(unique))
    prepared = [
        PreparedArticle(
            article=article,
            article_id=article_id_for(url),
            canonical_url=canonical_url(article.canonical_url or url),
            text_hash=text_hash(article.text),
            terms=extract_terms(article.title, article.text),
            seen_at=article.published_at or ingested_at,
        )
        for url, article in unique.items()
        if url not in known
    ]
    prepared.sort(key=lambda item: (item.seen_at, item.article.url))
    return prepared, len(known)


def embed_articles(prepared: list[PreparedArticle], db: Path, settings: Settings, **options) -> list[EmbeddingRow]:
    """Give every article a vector, reusing stored ones; returns the rows of those computed now.

    Args:
        options: `prefetched` and `embed`, as `flows.embedding.stored_or_embed` takes them.
    """
    embedded = stored_or_embed({item.text_hash: item.article.text for item in prepared}, db, settings, **options)
    for item in prepared:
        item.vector = embedded.vector(item.text_hash)
        computed = embedded.computed.get(item.text_hash)
        if computed is not None and computed[2]:
            item.whole_vector = item.vector
    return embedded.rows(embedding_model_key(settings), whole_model_key(settings))


class WholeVectors:
    """Whole-article vectors for dedupe, computed only for the articles a verdict asks about, and kept."""

    def __init__(self, db: Path, settings: Settings, prepared: list[PreparedArticle], history):
        self._db, self._settings = db, settings
        self._texts = {h.article_id: (h.text_hash, h.text) for h in history.articles if h.text}
        self._texts.update({item.article_id: (item.text_hash, item.article.text) for item in prepared})
        self._known = {item.article_id: item.whole_vector for item in prepared if item.whole_vector is not None}
        self._stored: dict[str, np.ndarray] | None = None  # read once, when first needed
        self.rows: list[EmbeddingRow] = []
        self.embedded = 0

    def __call__(self, article_ids: list[str]) -> dict[str, np.ndarray]:
        wanted = [a for a in article_ids if a not in self._known]
        if wanted:
            if self._stored is None:  # one read of the warehouse for every article this batch may ask about
                self._stored = stored_whole_vectors(sorted({digest for digest, _ in self._texts.values()}), self._db, self._settings)
            texts = {self._texts[a][0]: self._texts[a][1] for a in wanted}
            embedded = whole_vectors(texts, self._db, self._settings, stored=self._stored)
            self._stored.update({digest: vector for digest, (vector, _, _) in embedded.computed.items()})
            self.rows += embedded.rows(whole_model_key(self._settings))
            self.embedded += len(embedded.computed)
            self._known.update({a: embedded.vector(self._texts[a][0]) for a in wanted})
        return {a: self._known[a] for a in article_ids}


def dedupe_and_cluster(prepared: list[PreparedArticle], db: Path, settings: Settings) -> Verdicts:
    """Link duplicates to their earliest copy and assign every article a story, against the stored history."""
    if not prepared:
        return Verdicts()
    window = timedelta(days=settings.story_window_days)
    since = min(item.seen_at for item in prepared) - window
    batch_terms = Counter()
    for item in prepared:
        batch_terms.update(item.terms.keys())
    model_key = embedding_model_key(settings)
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        near = nearest_stored(connection, db, np.stack([item.vector for item in prepared]), settings)
        history = story_history(
            connection,
            model_key,
            since,
            sorted(set().union(*near)),
            [item.canonical_url for item in prepared],
            [item.text_hash for item in prepared],
            fallback_model=whole_model_key(settings),
        )
        document_counts, total = term_statistics(connection, list(batch_terms))
    # Articles embedded with another model still count for URL and text matches, not for similarity.
    dimension = len(prepared[0].vector)
    for stored in history.articles:
        if stored.vector is None:
            stored.vector = np.zeros(dimension, dtype=np.float32)

    # Within the batch too, each article is compared only with its nearest articles (and, for the
    # rewrite margin, with theirs when they are nearly identical): no step compares every pair.
    batch = nearest_in_batch(np.stack([item.vector for item in prepared]), settings.history_neighbours)
    # A pair over the rewrite gate may be a rewrite: the neighbours of either side are its rivals.
    floor = settings.rewrite_gate
    batch_near = [frozenset(prepared[q].article_id for q in batch.of(p)) for p in range(len(prepared))]
    compared_stored, compared_batch = [], []
    for p in range(len(prepared)):
        stored, within = set(near[p]), set(batch_near[p])
        for q in batch.of(p, floor):
            stored |= near[q]
            within |= batch_near[q]
        compared_stored.append(frozenset(stored))
        compared_batch.append(frozenset(within - {prepared[p].article_id}))
    rules, whole, counts = settings.dedupe_rules(), None, DedupeCounts()
    if lead_chunks(settings):
        rules, whole = replace(rules, lead_vectors=True), WholeVectors(db, settings, prepared, history)
    duplicates = find_duplicates(
        [DedupeItem(p.article_id, p.canonical_url, p.text_hash, p.article.text, p.vector, p.terms, None, stored, within)
         for p, stored, within in zip(prepared, compared_stored, compared_batch)],
        [DedupeItem(h.article_id, h.canonical_url, h.text_hash, h.text, h.vector, h.terms, h.duplicate_of) for h in history.articles],
        rules,
        whole,
        counts,
    )
    logger.info("compared %d candidate pairs of %d articles; the rewrite model scored %d; %d rewrites",
                counts.compared, len(prepared), counts.scored, counts.rewrites)
    if whole is not None and whole.embedded:
        logger.info("embedded %d whole articles for possible rewrites", whole.embedded)
    translations = find_translations(prepared, duplicates, db, settings)
    for article_id, match in list(duplicates.items()):  # a copy of what is now a translation: of its original
        if match.original_id in translations.duplicates:
            duplicates[article_id] = replace(match, original_id=translations.duplicates[match.original_id].original_id)
    duplicates.update(translations.duplicates)

    stories = [
        Story(s.story_id, s.vector_sum.astype(np.float64), Counter(s.term_counts), s.first_seen_at, s.last_seen_at, set(s.member_ids))
        for s in history.stories
    ]
    originals = [p for p in prepared if p.article_id not in duplicates]
    # The batch's own originals count towards document frequencies: a new name is rare, not unseen.
    for item in originals:
        for term in item.terms:
            document_counts[term] = document_counts.get(term, 0) + 1
    weights = TermWeights(
        document_counts, total + len(originals), settings.term_prior_documents, settings.term_language
    )
    # Each article may join the stories of its nearest stored articles (or the batch's own).
    story_of = {h.article_id: h.story_id for h in history.articles}
    for h in history.articles:  # a duplicate's original is in its story, even when not read itself
        if h.duplicate_of:
            story_of.setdefault(h.duplicate_of, h.story_id)
    near_of = {p.article_id: (hits, within) for p, hits, within in zip(prepared, near, batch_near)}
    assignments = assign_stories(
        [
            ClusterItem(p.article_id, p.vector, p.terms, p.seen_at,
                        frozenset(story_of[a] for a in near_of[p.article_id][0] if a in story_of),
                        near_of[p.article_id][1])
            for p in originals
        ],
        stories,
        weights,
        settings.cluster_rules(),
    )
    # A duplicate belongs to its original's story.
    story_of.update(translations.story_of)
    story_of.update({article_id: a.story_id for article_id, a in assignments.items()})
    for article_id, match in duplicates.items():
        assignments[article_id] = StoryAssignment(story_of[match.original_id], match.similarity, False)
    return Verdicts(duplicates, assignments, (whole.rows if whole is not None else []) + translations.embeddings)


def nearest_stored(connection, db: Path, vectors: np.ndarray, settings: Settings) -> list[set[str]]:
    """For each vector, the stored articles nearest to it and the rivals of those it nearly repeats.

    The vector index beside the warehouse is brought up to date first (and saved if it changed).
    A rewrite must stand out from every other article close to either side of the pair, so the
    stored articles a new one is nearly identical to bring their own neighbours along.
    """
    index = VectorIndex(
        db, embedding_model_key(settings), vectors.shape[1],
        exact_limit=settings.vector_index_exact_limit, search_depth=settings.vector_index_search_depth,
        fallback_model=whole_model_key(settings),
    )
    index.sync(connection)
    if index.changed:
        index.save()
    found = index.search(vectors, settings.history_neighbours)
    near = [set(hits) for hits in found]
    floor = settings.rewrite_gate
    close = sorted({article_id for hits in found for article_id, similarity in hits.items() if similarity >= floor})
    if close:
        exact = stored_vectors(connection, embedding_model_key(settings), close, whole_model_key(settings))
        if exact:
            rivals = dict(zip(exact, index.search(np.stack(list(exact.values())), settings.history_neighbours)))
            for hits in near:
                for article_id in [a for a in hits if a in rivals]:
                    hits.update(rivals[article_id])
    return near


def build_load_batch(
    prepared: list[PreparedArticle],
    verdicts: Verdicts,
    embeddings: list[EmbeddingRow],
    source: str,
    ingested_at: datetime,
    fetched: dict[str, "FetchedArticle"] | None = None,
) -> LoadBatch:
    """Rows for the warehouse from the prepared articles and their verdicts.

    Args:
        fetched: For feed runs, what polling brought for each URL (feed, page, text source).
    """
    fetched = fetched or {}
    rows, pages = [], []
    for item in prepared:
        origin = fetched.get(item.article.url)
        if origin and origin.html_zlib is not None:
            pages.append(PageRow(item.article_id, origin.final_url, origin.content_type, origin.html_zlib, ingested_at))
        article = item.article
        duplicate = verdicts.duplicates.get(item.article_id)
        story = verdicts.stories[item.article_id]
        rows.append(ArticleRow(
            article_id=item.article_id,
            url=article.url,
            canonical_url=item.canonical_url,
            title=article.title,
            published_at=article.published_at,
            ingested_at=ingested_at,
            text=article.text,
            text_hash=item.text_hash,
            author=article.author,
            language=article.language,
            site_name=article.site_name,
            source=source,
            duplicate_of=duplicate.original_id if duplicate else None,
            duplicate_kind=duplicate.kind if duplicate else None,
            duplicate_similarity=round(duplicate.similarity, 6) if duplicate else None,
            story_id=story.story_id,
            story_similarity=story.similarity,
            feed_id=origin.feed_id if origin else None,
            text_source=origin.text_source if origin else "file",
            image_url=article.image_url,
            extracted_with=EXTRACTOR if origin and origin.html_zlib is not None else None,
        ))
    return LoadBatch(rows, embeddings + verdicts.embeddings, {item.article_id: dict(item.terms) for item in prepared}, pages)


def load(batch: LoadBatch, db: Path, settings: Settings) -> LoadResult:
    """Write the batch in one transaction."""
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        return load_batch(connection, batch)
