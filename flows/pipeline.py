"""The ingest pipeline's stages as plain functions: prepare → embed → dedupe and cluster → load.

The Prefect flow in `flows.ingest` wraps each stage in a task; tests and benchmarks can call
them directly. Each stage that needs the warehouse opens it only for as long as it reads or
writes, so other processes can query between stages.
"""

import hashlib
import logging
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extract.cluster import ClusterItem, ClusterRules, Story, StoryAssignment, assign_stories
from extract.content import EXTRACTOR, Article, text_hash
from extract.dedupe import DedupeItem, DedupeRules, find_duplicates
from extract.embed import Embedder
from extract.feeds import canonicalize_url
from extract.neighbours import nearest_in_batch
from extract.terms import TermWeights, extract_terms
from flows.settings import Settings
from warehouse.connection import open_warehouse
from warehouse.load import ArticleRow, EmbeddingRow, LoadBatch, LoadResult, PageRow, load_batch
from warehouse.queries import (
    stored_embeddings, stored_urls, stored_vectors, story_history, term_statistics,
)
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
    event_time: datetime
    vector: np.ndarray | None = None


@dataclass
class Verdicts:
    """Duplicate links and story assignments of a batch, keyed by article_id."""

    duplicates: dict = field(default_factory=dict)
    stories: dict = field(default_factory=dict)

    @property
    def new_stories(self) -> int:
        return len({a.story_id for a in self.stories.values() if a.opened})


def article_id_for(url: str) -> str:
    """Stable primary key of an article: a hash of its URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def canonical_url(url: str) -> str:
    """The URL without tracking parameters, fragments or default ports (web URLs only)."""
    return canonicalize_url(url) if url.startswith(("http://", "https://")) else url


@lru_cache(maxsize=4)
def _embedder(
    model: str, chunk_tokens: int, batch_size: int, threads: int, backend: str = "torch", max_chunks: int = 0,
    device: str = "auto", max_characters: int | None = None,
) -> Embedder:
    return Embedder(
        model=model, chunk_tokens=chunk_tokens, batch_size=batch_size, threads=threads or None, backend=backend,
        max_chunks=max_chunks, device=device, max_characters=max_characters,
    )


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings (the model loads once per process)."""
    return _embedder(
        settings.model, settings.chunk_tokens, settings.embed_batch_size, settings.embed_threads, settings.embed_backend,
        settings.embed_max_chunks, settings.embed_device, settings.embed_max_characters,
    )


def embedding_model_key(settings: Settings) -> str:
    """What stored vectors are keyed by: the model and how articles were chunked for it."""
    key = f"{settings.model}@{settings.chunk_tokens}"
    if settings.embed_max_chunks:
        key += f"x{settings.embed_max_chunks}"
    # OpenVINO fp32 and PyTorch on a GPU give PyTorch's CPU vectors (cosine ≥ 0.9999), so they
    # share a key; int8 does not.
    return key + ("+openvino-int8" if settings.embed_backend == "openvino-int8" else "")


def prepare_articles(articles: list[Article], db: Path, ingested_at: datetime) -> tuple[list[PreparedArticle], int]:
    """Key the articles, drop those already stored or repeated in the batch, oldest first.

    Returns:
        The new articles, and how many were already stored.
    """
    unique = {article.url: article for article in articles}
    with open_warehouse(db) as connection:
        known = stored_urls(connection, list(unique))
    prepared = [
        PreparedArticle(
            article=article,
            article_id=article_id_for(url),
            canonical_url=canonical_url(article.canonical_url or url),
            text_hash=text_hash(article.text),
            terms=extract_terms(article.title, article.text),
            event_time=article.published_at or ingested_at,
        )
        for url, article in unique.items()
        if url not in known
    ]
    prepared.sort(key=lambda item: (item.event_time, item.article.url))
    return prepared, len(known)


def embed_articles(prepared: list[PreparedArticle], db: Path, settings: Settings) -> list[EmbeddingRow]:
    """Give every article a vector, reusing stored ones; returns the newly computed rows."""
    known, missing = texts_to_embed(prepared, db, settings)
    vectors, chunk_counts = embed_texts(list(missing.values()), settings) if missing else ([], [])
    return attach_vectors(prepared, known, missing, vectors, chunk_counts, settings)


def texts_to_embed(
    prepared: list[PreparedArticle], db: Path, settings: Settings
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Stored vectors of the batch's texts, and the texts (by hash) that still need one."""
    hashes = sorted({item.text_hash for item in prepared})
    with open_warehouse(db) as connection:
        known = stored_embeddings(connection, embedding_model_key(settings), hashes)
    missing = {item.text_hash: item.article.text for item in prepared if item.text_hash not in known}
    return known, missing


def embed_texts(texts: list[str], settings: Settings) -> tuple[list[np.ndarray], list[int]]:
    """Vectors and chunk counts of texts, with this process's embedder."""
    vectors, chunk_counts = get_embedder(settings).embed(texts)
    return list(vectors), list(chunk_counts)


class EmbeddingPrefetch:
    """Embeds article texts in a background thread while the rest of the batch is still arriving.

    A feed run hands over each article's text as soon as it is extracted (`add`), so the model
    works while pages are still being fetched and extracted; each stored batch then takes the
    vectors of its texts (`vectors_for`, waiting for those still queued) and embeds only what is
    left. Each group of texts is first checked against the vectors already stored, so a text
    stored before is not embedded again. The model releases the GIL, so the thread runs beside the
    fetching event loop. A failure is logged and leaves the texts to the run's own embedding step.

    Only OpenVINO embeds ahead. PyTorch's threads slow down sharply when they share the cores with
    the extraction workers, and on a GPU chunking the texts is Python work that competes with
    fetching for the interpreter (BENCHMARKS.md), so there the texts are left to the run as well.
    """

    def __init__(self, db: Path, settings: Settings, batch_articles: int = 16):
        self._db, self._settings, self._batch_articles = db, settings, batch_articles
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._vectors: dict[str, tuple[np.ndarray, int]] = {}
        self._seen: set[str] = set()
        self._pending: set[str] = set()  # queued and not yet embedded (or given up)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, text: str) -> None:
        """Queue a text for embedding (the thread starts with the first one)."""
        digest = text_hash(text)
        with self._changed:
            if digest in self._seen:
                return
            self._seen.add(digest)
            self._pending.add(digest)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="embedding-prefetch", daemon=True)
                self._thread.start()
        self._queue.put((digest, text))

    def vectors_for(self, digests) -> dict[str, tuple[np.ndarray, int]]:
        """The (vector, chunk count) of these text hashes that were embedded ahead, waiting for queued ones."""
        wanted = set(digests)
        with self._changed:
            self._changed.wait_for(lambda: not (wanted & self._pending))
            return {digest: self._vectors.pop(digest) for digest in wanted if digest in self._vectors}

    def finish(self) -> dict[str, tuple[np.ndarray, int]]:
        """Wait for the queued texts; the (vector, chunk count) not taken yet, by text hash."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        with self._changed:
            vectors, self._vectors = self._vectors, {}
        return vectors

    def _run(self) -> None:
        skip = False
        try:
            # Loads the model on the first text (a run with nothing new never loads it).
            backend = get_embedder(self._settings).backend_in_use
        except Exception as error:  # noqa: BLE001  (the run's own step reports it)
            logger.warning("embedding ahead failed, the run embeds its texts itself: %s: %s", type(error).__name__, error)
            skip = True
        else:
            if backend == "torch":
                logger.debug("embedding ahead is off on torch")
                skip = True
        try:
            while True:
                texts = [self._queue.get()]
                # Take whatever else is already waiting, up to a batch: small batches when texts trickle in.
                while texts[-1] is not None and len(texts) < self._batch_articles and not self._queue.empty():
                    texts.append(self._queue.get())
                done = texts[-1] is None
                texts = dict(item for item in texts if item is not None)
                if not skip and texts:
                    try:
                        computed = self._embed(texts)
                    except Exception as error:  # noqa: BLE001  (the run embeds these texts itself)
                        logger.warning("embedding ahead failed, the run embeds its texts itself: %s: %s",
                                       type(error).__name__, error)
                        skip, computed = True, {}
                    with self._changed:
                        self._vectors.update(computed)
                with self._changed:
                    self._pending.difference_update(texts)
                    self._changed.notify_all()
                if done:
                    return
        finally:  # never leave a batch waiting for texts this thread will not embed
            with self._changed:
                self._pending.clear()
                self._changed.notify_all()

    def _embed(self, texts: dict[str, str]) -> dict[str, tuple[np.ndarray, int]]:
        with open_warehouse(self._db) as connection:
            stored = stored_embeddings(connection, embedding_model_key(self._settings), list(texts))
        todo = {digest: text for digest, text in texts.items() if digest not in stored}
        if not todo:
            return {}
        vectors, counts = embed_texts(list(todo.values()), self._settings)
        return dict(zip(todo, zip(vectors, counts)))


def vectors_with_prefetched(
    missing: dict[str, str],
    prefetched: dict[str, tuple[np.ndarray, int]],
    embed_rest,
) -> tuple[list[np.ndarray], list[int]]:
    """Vectors and chunk counts of the missing texts, in their order: prefetched ones, the rest from `embed_rest`.

    Args:
        missing: Texts by hash that have no stored vector.
        prefetched: What `EmbeddingPrefetch.vectors_for` or `finish` returned.
        embed_rest: Called with the texts that were not prefetched; returns (vectors, chunk counts).
    """
    rest = {digest: text for digest, text in missing.items() if digest not in prefetched}
    vectors, counts = embed_rest(list(rest.values())) if rest else ([], [])
    computed = dict(prefetched)
    computed.update(zip(rest, zip(vectors, counts)))
    ordered = [computed[digest] for digest in missing]
    return [vector for vector, _ in ordered], [count for _, count in ordered]


def attach_vectors(
    prepared: list[PreparedArticle],
    known: dict[str, np.ndarray],
    missing: dict[str, str],
    vectors: list[np.ndarray],
    chunk_counts: list[int],
    settings: Settings,
) -> list[EmbeddingRow]:
    """Set every article's vector; returns rows for the newly computed ones."""
    model_key = embedding_model_key(settings)
    now = datetime.now(UTC)
    rows = []
    for digest, vector, chunks in zip(missing, vectors, chunk_counts):
        known[digest] = vector
        rows.append(EmbeddingRow(digest, model_key, np.asarray(vector).tolist(), chunks, now))
    for item in prepared:
        item.vector = known[item.text_hash]
    logger.info("embedded %d texts, reused %d", len(missing), len(known) - len(missing))
    return rows


def decide(prepared: list[PreparedArticle], db: Path, settings: Settings) -> Verdicts:
    """Find duplicates and assign stories against recent stored articles."""
    if not prepared:
        return Verdicts()
    window = timedelta(days=settings.story_window_days)
    since = min(item.event_time for item in prepared) - window
    batch_terms = Counter()
    for item in prepared:
        batch_terms.update(item.terms.keys())
    model_key = embedding_model_key(settings)
    with open_warehouse(db) as connection:
        near = nearest_stored(connection, db, np.stack([item.vector for item in prepared]), settings)
        history = story_history(
            connection,
            model_key,
            since,
            sorted(set().union(*near)),
            [item.canonical_url for item in prepared],
            [item.text_hash for item in prepared],
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
    floor = settings.rewrite_similarity - 0.05
    batch_near = [frozenset(prepared[q].article_id for q in batch.of(p)) for p in range(len(prepared))]
    compared_stored, compared_batch = [], []
    for p in range(len(prepared)):
        stored, within = set(near[p]), set(batch_near[p])
        for q in batch.of(p, floor):
            stored |= near[q]
            within |= batch_near[q]
        compared_stored.append(frozenset(stored))
        compared_batch.append(frozenset(within - {prepared[p].article_id}))
    duplicates = find_duplicates(
        [DedupeItem(p.article_id, p.canonical_url, p.text_hash, p.article.text, p.vector, p.terms, None, stored, within)
         for p, stored, within in zip(prepared, compared_stored, compared_batch)],
        [DedupeItem(h.article_id, h.canonical_url, h.text_hash, h.text, h.vector, h.terms, h.duplicate_of) for h in history.articles],
        DedupeRules(
            copy_jaccard=settings.copy_jaccard,
            rewrite_similarity=settings.rewrite_similarity,
            rewrite_term_overlap=settings.rewrite_term_overlap,
            rewrite_margin=settings.rewrite_margin,
        ),
    )

    stories = [
        Story(s.story_id, s.vector_sum.astype(np.float64), Counter(s.term_counts), s.first_event_time, s.last_event_time, set(s.member_ids))
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
            ClusterItem(p.article_id, p.vector, p.terms, p.event_time,
                        frozenset(story_of[a] for a in near_of[p.article_id][0] if a in story_of),
                        near_of[p.article_id][1])
            for p in originals
        ],
        stories,
        weights,
        ClusterRules(
            embedding_weight=settings.story_embedding_weight,
            threshold=settings.story_threshold,
            window=window,
            refine_passes=settings.story_refine_passes,
            merge_threshold=settings.story_merge_threshold,
        ),
    )
    # A duplicate belongs to its original's story.
    story_of.update({article_id: a.story_id for article_id, a in assignments.items()})
    for article_id, match in duplicates.items():
        assignments[article_id] = StoryAssignment(story_of[match.original_id], match.similarity, False)
    return Verdicts(duplicates, assignments)


def nearest_stored(connection, db: Path, vectors: np.ndarray, settings: Settings) -> list[set[str]]:
    """For each vector, the stored articles nearest to it and the rivals of those it nearly repeats.

    The vector index beside the warehouse is brought up to date first (and saved if it changed).
    A rewrite must stand out from every other article close to either side of the pair, so the
    stored articles a new one is nearly identical to bring their own neighbours along.
    """
    index = VectorIndex(
        db, embedding_model_key(settings), vectors.shape[1],
        exact_limit=settings.vector_index_exact_limit, search_depth=settings.vector_index_search_depth,
    )
    index.sync(connection)
    if index.changed:
        index.save()
    found = index.search(vectors, settings.history_neighbours)
    near = [set(hits) for hits in found]
    floor = settings.rewrite_similarity - 0.05
    close = sorted({article_id for hits in found for article_id, similarity in hits.items() if similarity >= floor})
    if close:
        exact = stored_vectors(connection, embedding_model_key(settings), close)
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
    return LoadBatch(rows, embeddings, {item.article_id: dict(item.terms) for item in prepared}, pages)


def load(batch: LoadBatch, db: Path) -> LoadResult:
    """Write the batch in one transaction."""
    with open_warehouse(db) as connection:
        return load_batch(connection, batch)


FEED_FILE_MAX_BYTES = 10 * 1024 * 1024  # an OPML list of ~50,000 feeds


class FeedFileError(Exception):
    """A feed list file cannot be read; the message is one sentence for the user."""


def import_feed_file(path: Path, db: Path, now: datetime) -> tuple[int, int]:
    """Add every feed of an OPML file that is not listed yet.

    Returns:
        How many feeds the file lists, and how many were added.

    Raises:
        FeedFileError: The file is missing, unreadable or not OPML.
    """
    from extract.fixtures import read_bounded
    from extract.opml import OpmlError, read_opml
    from warehouse.feeds import add_feed

    data = read_bounded(Path(path), FEED_FILE_MAX_BYTES)  # never a FIFO that blocks, nor a huge file
    if isinstance(data, str):
        raise FeedFileError(f"cannot read {path}: {data.removeprefix('cannot be read: ')}")
    try:
        feeds = read_opml(data)
    except OpmlError as error:
        raise FeedFileError(f"{path}: {error}") from None
    with open_warehouse(db) as connection:
        added = sum(add_feed(connection, feed.url, feed.title, now) for feed in feeds)
    return len(feeds), added
