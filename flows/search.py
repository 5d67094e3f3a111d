"""Search over the stored articles: keywords through the full-text index beside the warehouse, or meaning through the vector index.

The full-text index (`extract.search_index`, in `<db>.search/`) is derived data: each ingest run
adds the articles it stored (`sync_search_index`), and an index that is missing, of another
version, damaged or that disagrees with the `articles` table is rebuilt from DuckDB. Searching
brings it up to date first when it can (another process may be writing it; then the index is
searched as it stands). Keyword search and watches share one query language (`extract.query`).
"""

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from extract.query import Query, parse_query
from extract.search_index import SearchDocument, SearchIndex, SearchIndexBusy, SearchIndexError, discard, read_state
from flows.embedding import embedding_model_key, get_embedder, whole_model_key
from flows.settings import Settings
from warehouse.connection import DEFAULT_LOCK_WAIT_SECONDS, open_warehouse
from warehouse.queries import articles_by_id
from warehouse.search_documents import article_count_and_latest, search_documents
from warehouse.vector_index import VectorIndex

logger = logging.getLogger(__name__)

SYNC_CHUNK = 5000
# Articles a keyword query may select for a list of stories, a feed or an export (`newswatch export`, the API).
MAX_SELECTED_ARTICLES = 100_000


def search_folder(db: Path) -> Path:
    """Where the full-text index of a warehouse lives."""
    return Path(f"{db}.search")


def discard_search_index(db: Path) -> None:
    """Remove the full-text index (it is rebuilt from DuckDB when next needed)."""
    try:
        discard(search_folder(db))
    except (OSError, SearchIndexError) as error:
        logger.warning("could not remove the search index of %s: %s", db, error)


def _documents(rows) -> list[SearchDocument]:
    return [SearchDocument(article_id, story_id, title, text or "", seen_at, ingested_at)
            for article_id, story_id, title, text, seen_at, ingested_at in rows]


def sync_search_index(db: Path, settings: Settings) -> int:
    """Bring the full-text index up to date with the warehouse; returns how many articles it added.

    Raises:
        SearchIndexBusy: Another process is writing the index.
    """
    folder = search_folder(db)
    with open_warehouse(db, read_only=True, memory_limit=settings.duckdb_memory_limit) as connection:
        total, latest = article_count_and_latest(connection)
    try:
        index = SearchIndex(folder)
    except SearchIndexBusy:
        raise
    except SearchIndexError as error:
        logger.warning("rebuilding the search index: %s", error)
        discard(folder)
        index = SearchIndex(folder)
    with index:
        if index.is_current(total, latest):
            return 0
        state = index.state
        # Batches are loaded whole, so the articles ingested after the index's latest are the new ones,
        # unless the warehouse holds fewer articles or older ones than the index (then it is rebuilt).
        since = state.ingested_until if state and state.documents else None
        if since is not None and (state.documents > total or latest is None or latest < since):
            since = None
        if since is None:
            index.clear()
        added = _add_articles(index, db, settings, since)
        if not index.is_current(total, latest):
            logger.warning("the search index disagreed with the warehouse; rebuilding it")
            index.clear()
            added = _add_articles(index, db, settings, None)
    logger.info("search index: added %d articles", added)
    return added


def _add_articles(index: SearchIndex, db: Path, settings: Settings, since: datetime | None) -> int:
    """Add the articles ingested after `since` (all when None) in chunks, and commit."""
    added, after = 0, None
    while True:
        with open_warehouse(db, read_only=True, memory_limit=settings.duckdb_memory_limit) as connection:
            rows = search_documents(connection, after, since, SYNC_CHUNK)
        if not rows:
            break
        added += index.add(_documents(rows))
        after = (rows[-1][5], rows[-1][0])
    index.commit()
    return added


@dataclass(frozen=True)
class SearchResult:
    """One article found, with what is shown of it; `score` is BM25 (keywords) or the cosine (meaning)."""

    article: dict
    score: float


def keyword_hits(db: Path, settings: Settings, query: Query, *, since: datetime | None, limit: int,
                 story_ids=None, sync: bool = True) -> list[tuple[str, float]]:
    """(article_id, BM25 score) of the best matches, after bringing the index up to date when it can.

    With `sync=False` (read-only readers such as the HTTP API) the index is searched as the
    ingest runs left it, never written.
    """
    if sync:
        try:
            sync_search_index(db, settings)
        except SearchIndexBusy:
            logger.info("the search index is being written by another process; searching it as it stands")
    if read_state(search_folder(db)) is None:
        return []
    with SearchIndex(search_folder(db)) as index:
        hits = index.search(query, limit=limit, since=since, story_ids=story_ids)
    return [(hit.article_id, hit.score) for hit in hits]


# The vector index of each (database, model, settings), kept in memory between searches with the
# time its state file was saved: loading it from disk for every search read every stored vector
# each time (90 ms at 100,000 articles, about a second at 1M). It is brought up to date in memory
# before each search, and loaded afresh once a run has saved it again.
_vector_indexes: dict[tuple, tuple[int | None, VectorIndex]] = {}
_vector_lock = threading.Lock()


def _saved_at(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def semantic_hits(db: Path, settings: Settings, text: str, *, limit: int,
                  lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS) -> list[tuple[str, float]]:
    """(article_id, cosine) of the stored articles closest in meaning to `text`, embedded with the pipeline's model."""
    embedder = get_embedder(settings)
    vector = embedder.embed([text])[0][0]
    index = VectorIndex(
        db, embedding_model_key(settings), len(vector),
        exact_limit=settings.vector_index_exact_limit, search_depth=settings.vector_index_search_depth,
        fallback_model=whole_model_key(settings),
    )
    key = (str(Path(db).resolve()), index.model, index.dimensions, index.exact_limit, index.search_depth, index.fallback_model)
    with _vector_lock:  # one search at a time brings the kept index up to date and reads it
        with open_warehouse(db, read_only=True, lock_wait=lock_wait, memory_limit=settings.duckdb_memory_limit) as connection:
            saved_at = _saved_at(index.state_path)
            kept = _vector_indexes.pop(key, None)
            if kept is not None and kept[0] == saved_at:
                index = kept[1]
            index.sync(connection)  # in memory only: the runs save it
        _vector_indexes[key] = (saved_at, index)  # kept only once brought up to date
        (found,) = index.search(np.asarray(vector, dtype=np.float32)[None, :], limit)  # the file is let go by now
    return sorted(found.items(), key=lambda item: -item[1])


def search(
    db: Path, settings: Settings, text: str, *, semantic: bool = False, since: datetime | None = None, limit: int = 20,
    sync: bool = True, lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> list[SearchResult]:
    """The best articles for a keyword query (or, `semantic`, a description), best first.

    `sync=False` searches the full-text index as it stands, without writing it; `lock_wait` is how
    long each read waits while a writer holds the database.

    Raises:
        extract.query.QueryError: The keyword query cannot be parsed.
    """
    if semantic:
        # Over-fetch, then keep what was seen since `since`.
        hits = semantic_hits(db, settings, text, limit=limit * 5 if since else limit, lock_wait=lock_wait)
    else:
        hits = keyword_hits(db, settings, parse_query(text), since=since, limit=limit, sync=sync)
    with open_warehouse(db, read_only=True, lock_wait=lock_wait, memory_limit=settings.duckdb_memory_limit) as connection:
        articles = articles_by_id(connection, [article_id for article_id, _ in hits])
    results = [SearchResult(articles[article_id], score) for article_id, score in hits if article_id in articles]
    if since is not None:
        results = [result for result in results if result.article["seen_at"] >= since]
    return results[:limit]


def group_by_story(results: list[SearchResult]) -> list[list[SearchResult]]:
    """Results grouped by story; stories in the order of their best result."""
    groups: dict[str, list[SearchResult]] = {}
    for result in results:
        groups.setdefault(result.article["story_id"], []).append(result)
    return list(groups.values())
