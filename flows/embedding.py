"""The embedding stage: every text gets its stored vector, or is embedded now (ahead of time where it pays).

Every article gets an everyday vector: the mean of its first `NEWSWATCH_EMBED_LEAD_CHUNKS`
chunks, its lead, which neighbours, stories, search and semantic watches use. Its whole-article
vector is computed only when a verdict needs it (a possible rewrite: `whole_vectors`), then
stored; for an article no longer than its lead, the lead vector is also the whole one and is
stored as both. `stored_or_embed` is the one way texts get everyday vectors, in runs, in
re-extraction and in the embedding-ahead thread: a text whose hash already has a vector of the
key is never embedded again.

The embedder of the settings and the keys its vectors are stored under are made in
`reading.embedder`, without Prefect, so that searches and the dashboard embed their queries alike;
`get_embedder` adds the service's warm model (`flows.model_host`).
"""

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from extract.content import text_hash
from extract.embed import Embedder
from flows.model_host import HOST_ADDRESS
from flows.settings import Settings
from reading.embedder import embedder_config, embedding_model_key, lead_chunks, local_embedder, make_embedder, whole_model_key
from warehouse.connection import open_warehouse
from warehouse.load import EmbeddingRow
from warehouse.lookups import stored_embeddings

logger = logging.getLogger(__name__)

# Embeds texts: returns their vectors, chunk counts and whether each covers its whole text, in order.
EmbedFunction = Callable[[list[str]], tuple[list[np.ndarray], list[int], list[bool]]]


@lru_cache(maxsize=4)
def _hosted_embedder(config: tuple):
    from flows.model_host import remote_embedder

    return remote_embedder(config, make_embedder)


def get_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for these settings (the model loads once per process).

    In a flow run started by `newswatch serve`, the serving process's warm model embeds
    (`flows.model_host`), unless it cannot be reached.
    """
    if os.environ.get(HOST_ADDRESS):
        hosted = _hosted_embedder(embedder_config(settings))
        if hosted is not None:
            return hosted
    return local_embedder(settings)


def embed_texts(texts: list[str], settings: Settings) -> tuple[list[np.ndarray], list[int], list[bool]]:
    """Everyday vectors of texts with this process's embedder, their chunk counts, and which are whole texts."""
    embedder = get_embedder(settings)
    if lead_chunks(settings):
        vectors, counts, complete = embedder.embed_leads(texts, lead_chunks(settings))
        return list(vectors), list(counts), list(complete)
    vectors, counts = embedder.embed(texts)
    return list(vectors), list(counts), [True] * len(texts)


# A vector computed now: the vector, its chunk count, and whether it covers the whole text.
Computed = tuple[np.ndarray, int, bool]


@dataclass
class EmbeddedTexts:
    """Vectors of texts by text hash: those already stored, and those computed now."""

    stored: dict[str, np.ndarray] = field(default_factory=dict)
    computed: dict[str, Computed] = field(default_factory=dict)

    def vector(self, digest: str) -> np.ndarray:
        """The vector of the text with this hash."""
        return self.stored[digest] if digest in self.stored else self.computed[digest][0]

    def rows(self, model: str, whole_model: str | None = None, created_at: datetime | None = None) -> list[EmbeddingRow]:
        """`embeddings` rows for the vectors computed now; with `whole_model`, also under it for whole texts."""
        created_at = created_at or datetime.now(UTC)
        rows = []
        for digest, (vector, chunks, complete) in self.computed.items():
            listed = np.asarray(vector).tolist()
            rows.append(EmbeddingRow(digest, model, listed, chunks, created_at))
            if whole_model and whole_model != model and complete:
                rows.append(EmbeddingRow(digest, whole_model, listed, chunks, created_at))
        return rows


def stored_or_embed(
    texts: Mapping[str, str],
    db: Path,
    settings: Settings,
    *,
    prefetched: Mapping[str, Computed] | None = None,
    embed: EmbedFunction | None = None,
) -> EmbeddedTexts:
    """The everyday vector of every text: stored ones read from the warehouse, the rest embedded now.

    Args:
        texts: Texts by their hash (`extract.content.text_hash`).
        db: DuckDB file holding the stored vectors.
        settings: The embedding model and how texts are chunked for it.
        prefetched: Vectors already computed for some texts (embedded ahead), as `embed` returns them.
        embed: How to embed the rest (default: this process's embedder); e.g. chunks on a Dask cluster.

    Returns:
        The stored vectors, and those computed now (prefetched ones included) with their chunk counts.
    """
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        stored = stored_embeddings(connection, embedding_model_key(settings), list(texts))
    prefetched = prefetched or {}
    computed = {digest: prefetched[digest] for digest in texts if digest not in stored and digest in prefetched}
    rest = {digest: text for digest, text in texts.items() if digest not in stored and digest not in computed}
    if rest:
        vectors, counts, complete = (embed or (lambda items: embed_texts(items, settings)))(list(rest.values()))
        computed.update(zip(rest, zip(vectors, counts, complete)))
    logger.info("embedded %d texts, reused %d", len(computed), len(stored))
    return EmbeddedTexts(stored, computed)


def stored_whole_vectors(digests: list[str], db: Path, settings: Settings) -> dict[str, np.ndarray]:
    """The stored whole-article vectors of these text hashes (those that have one)."""
    if not digests:
        return {}
    # Not read-only: the embedding-ahead thread may hold a writable connection to the same file in
    # this process, and DuckDB refuses a second one of another configuration.
    with open_warehouse(db, memory_limit=settings.duckdb_memory_limit) as connection:
        return stored_embeddings(connection, whole_model_key(settings), digests)


def whole_vectors(
    texts: Mapping[str, str], db: Path, settings: Settings, *, stored: Mapping[str, np.ndarray] | None = None
) -> EmbeddedTexts:
    """The whole-article vector of every text: stored ones read from the warehouse, the rest embedded now.

    Args:
        texts: Texts by their hash.
        db: DuckDB file holding the stored vectors.
        settings: The embedding model and how texts are chunked for it.
        stored: Whole vectors already read from the warehouse (`stored_whole_vectors`), by
            hash; then the warehouse is not read again.
    """
    if not texts:
        return EmbeddedTexts()
    if stored is None:
        stored = stored_whole_vectors(list(texts), db, settings)
    stored = {digest: stored[digest] for digest in texts if digest in stored}
    rest = {digest: text for digest, text in texts.items() if digest not in stored}
    computed: dict[str, Computed] = {}
    if rest:
        vectors, counts = get_embedder(settings).embed(list(rest.values()))
        computed = {digest: (vector, count, True) for digest, vector, count in zip(rest, vectors, counts)}
        logger.info("embedded %d whole articles a verdict needed", len(rest))
    return EmbeddedTexts(stored, computed)


def verdict_whole_vectors(connection, settings: Settings) -> int:
    """How many stored texts have a whole-article vector their lead's did not give: those a verdict asked for."""
    lead = lead_chunks(settings)
    if not lead:
        return 0
    return connection.execute(
        "SELECT count(*) FROM embeddings WHERE model = ? AND chunk_count > ?", [whole_model_key(settings), lead]
    ).fetchone()[0]


class EmbeddingPrefetch:
    """Embeds article texts in a background thread while the rest of the batch is still arriving.

    A feed run hands over each article's text as soon as it is extracted (`add`), so the model
    works while pages are still being fetched and extracted; each stored batch then takes the
    vectors of its texts (`vectors_for`, waiting for those still queued) and embeds only what is
    left. Texts with a stored vector are not embedded again (`stored_or_embed`). The model
    releases the GIL, so the thread runs beside the fetching event loop. A failure is logged and
    leaves the texts to the run's own embedding step.

    Only OpenVINO embeds ahead. PyTorch's threads slow down sharply when they share the cores with
    the extraction workers, and on a GPU chunking the texts is Python work that competes with
    fetching for the interpreter (BENCHMARKS.md), so there the texts are left to the run as well.
    """

    def __init__(self, db: Path, settings: Settings, batch_articles: int = 16):
        self._db, self._settings, self._batch_articles = db, settings, batch_articles
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._vectors: dict[str, Computed] = {}
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

    def vectors_for(self, digests) -> dict[str, Computed]:
        """The vectors of these text hashes that were embedded ahead, waiting for queued ones."""
        wanted = set(digests)
        with self._changed:
            self._changed.wait_for(lambda: not (wanted & self._pending))
            return {digest: self._vectors.pop(digest) for digest in wanted if digest in self._vectors}

    def finish(self) -> dict[str, Computed]:
        """Wait for the queued texts; the vectors not taken yet, by text hash."""
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
                        computed = stored_or_embed(texts, self._db, self._settings).computed
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
