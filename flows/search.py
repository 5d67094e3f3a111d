"""Keeping the full-text index beside the warehouse up to date, and searching with the pipeline's settings.

The full-text index (`extract.search_index`, in `<db>.search/`) is derived data: each ingest run
adds the articles it stored (`sync_search_index`), and an index that is missing, of another
version, damaged or that disagrees with the `articles` table is rebuilt from DuckDB. A search
from the command line brings it up to date first when it can (another process may be writing it;
then the index is searched as it stands). The searching itself is `reading.search`, the one
implementation the command line, the API and the dashboard share; here it gets the settings'
warehouse connection and this process's embedder (`flows.embedding.get_embedder`).
"""

import logging
from datetime import datetime
from functools import partial
from pathlib import Path

from extract.query import Query, parse_query
from extract.search_index import SearchDocument, SearchIndex, SearchIndexBusy, SearchIndexError, discard
from flows.embedding import get_embedder
from flows.settings import Settings
from reading.search import SearchResult, VectorIndexSettings, keyword_search, nearest_articles, search_folder, semantic_search
from reading.search import keyword_hits as index_hits
from warehouse.connection import DEFAULT_LOCK_WAIT_SECONDS, open_warehouse
from warehouse.search_documents import article_count_and_latest, search_documents

logger = logging.getLogger(__name__)

SYNC_CHUNK = 5000


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


def _try_sync(db: Path, settings: Settings) -> None:
    """Bring the full-text index up to date unless another process is writing it (then it is searched as it stands)."""
    try:
        sync_search_index(db, settings)
    except SearchIndexBusy:
        logger.info("the search index is being written by another process; searching it as it stands")


def _reads(db: Path, settings: Settings, lock_wait: float):
    """How a search opens the warehouse: read-only, waiting `lock_wait` for a writer."""
    return partial(open_warehouse, db, read_only=True, lock_wait=lock_wait, memory_limit=settings.duckdb_memory_limit)


def keyword_hits(db: Path, settings: Settings, query: Query, *, since: datetime | None, limit: int,
                 story_ids=None, sync: bool = True) -> list[tuple[str, float]]:
    """(article_id, BM25 score) of the best matches, after bringing the index up to date when it can.

    With `sync=False` (read-only readers such as the HTTP API) the index is searched as the
    ingest runs left it, never written.
    """
    if sync:
        _try_sync(db, settings)
    return index_hits(db, query, since=since, limit=limit, story_ids=story_ids)


def semantic_hits(db: Path, settings: Settings, text: str, *, limit: int,
                  lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS) -> list[tuple[str, float]]:
    """(article_id, cosine) of the stored articles closest in meaning to `text`, embedded with the pipeline's model."""
    vector = get_embedder(settings).embed([text])[0][0]
    hits, _ = nearest_articles(_reads(db, settings, lock_wait), db, VectorIndexSettings.of(settings), vector, limit=limit)
    return hits


def search(
    db: Path, settings: Settings, text: str, *, semantic: bool = False, since: datetime | None = None, limit: int = 20,
    sync: bool = True, lock_wait: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> list[SearchResult]:
    """The best articles for a keyword query (or, `semantic`, a description), best first (`reading.search`).

    `sync=False` searches the full-text index as it stands, without writing it; `lock_wait` is how
    long each read waits while a writer holds the database.

    Raises:
        extract.query.QueryError: The keyword query cannot be parsed.
    """
    connect = _reads(db, settings, lock_wait)
    if semantic:
        vector = get_embedder(settings).embed([text])[0][0]
        results, _ = semantic_search(connect, db, VectorIndexSettings.of(settings), vector, since=since, limit=limit)
        return results
    query = parse_query(text)
    if sync:
        _try_sync(db, settings)
    return keyword_search(connect, db, query, since=since, limit=limit)
