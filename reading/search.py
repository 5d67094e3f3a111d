"""Search over the stored articles, one way for the command line, the HTTP API and the dashboard.

Keywords go through the full-text index beside the warehouse (`extract.search_index`, in
`<db>.search/`, one query language with the watches: `extract.query`); meaning goes through the
vector index beside it (`warehouse.vector_index`). Searching here never writes either: the
full-text index is searched as it stands (the ingest runs, and `newswatch search` before it
searches, bring it up to date: `flows.search.sync_search_index`), and the vector index is kept in
this process's memory and brought up to date there (the runs save it). The hits are read back
from the warehouse, so an article an index still holds but the warehouse no longer does is left
out, and only those seen since `since` are kept.

Each search takes `connect`: how to open a read-only warehouse connection, as a context manager
(`functools.partial(open_warehouse, db, read_only=True, ...)`, or one already open wrapped in
`contextlib.nullcontext`). A semantic search lets that connection go before it searches the kept
vector index, then opens it again to read the articles.
"""

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from extract.query import Query
from extract.search_index import SearchIndex, read_state
from reading.embedder import embedding_model_key, whole_model_key
from warehouse.queries import articles_by_id
from warehouse.vector_index import VectorIndex

if TYPE_CHECKING:  # the settings are only read here
    from flows.settings import Settings

# Opens a read-only warehouse connection (a context manager that gives the connection).
Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

# Articles a keyword query may select for a list of stories, a feed or an export (`newswatch export`, the API).
MAX_SELECTED_ARTICLES = 100_000
# A semantic search filtered by time asks the vector index for this many times the articles
# wanted (the index knows no times), then keeps those seen since then.
SINCE_OVER_FETCH = 5


def search_folder(db: Path) -> Path:
    """Where the full-text index of a warehouse lives."""
    return Path(f"{db}.search")


def has_search_index(db: Path) -> bool:
    """Whether the warehouse has a full-text index yet (a folder without its state file is none; opening it would make one)."""
    return read_state(search_folder(db)) is not None


@dataclass(frozen=True)
class SearchResult:
    """One article found, with what is shown of it; `score` is BM25 (keywords) or the cosine (meaning)."""

    article: dict
    score: float


def group_by_story(results: list[SearchResult]) -> list[list[SearchResult]]:
    """Results grouped by story; stories in the order of their best result."""
    groups: dict[str, list[SearchResult]] = {}
    for result in results:
        groups.setdefault(result.article["story_id"], []).append(result)
    return list(groups.values())


def found_articles(
    connection: duckdb.DuckDBPyConnection, hits: list[tuple[str, float]], *, since: datetime | None, limit: int
) -> list[SearchResult]:
    """The stored articles of these (article_id, score) hits, best first, seen at or after `since`, at most `limit`."""
    articles = articles_by_id(connection, [article_id for article_id, _ in hits])
    results = [SearchResult(articles[article_id], score) for article_id, score in hits if article_id in articles]
    if since is not None:
        results = [result for result in results if result.article["seen_at"] >= since]
    return results[:limit]


def keyword_hits(
    db: Path, query: Query, *, since: datetime | None, limit: int, story_ids=None
) -> list[tuple[str, float]]:
    """(article_id, BM25 score) of the best matches in the full-text index as it stands; none without an index.

    Raises:
        extract.search_index.SearchIndexError: The index cannot be used (the next run rebuilds it).
    """
    if not has_search_index(db):
        return []
    with SearchIndex(search_folder(db)) as index:
        hits = index.search(query, limit=limit, since=since, story_ids=story_ids)
    return [(hit.article_id, hit.score) for hit in hits]


def keyword_search(connect: Connect, db: Path, query: Query, *, since: datetime | None, limit: int) -> list[SearchResult]:
    """The articles that match a parsed keyword query, best first.

    Raises:
        extract.search_index.SearchIndexError: The full-text index cannot be used.
    """
    hits = keyword_hits(db, query, since=since, limit=limit)
    with connect() as connection:
        return found_articles(connection, hits, since=since, limit=limit)


@dataclass(frozen=True)
class VectorIndexSettings:
    """Which vector index a semantic search reads, and how: the settings' embedding keys and `vector_index_*`."""

    model: str
    fallback_model: str | None
    exact_limit: int
    search_depth: int

    @classmethod
    def of(cls, settings: "Settings") -> "VectorIndexSettings":
        """Those of these settings (everyday vectors, whole-article ones where a text has no everyday one)."""
        return cls(embedding_model_key(settings), whole_model_key(settings), settings.vector_index_exact_limit,
                   settings.vector_index_search_depth)


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


def nearest_articles(
    connect: Connect, db: Path, settings: VectorIndexSettings, vector, *, limit: int
) -> tuple[list[tuple[str, float]], int]:
    """(article_id, approximate cosine) of the `limit` stored articles nearest to a query vector, most similar first.

    Args:
        connect: Opens a read-only warehouse connection, let go before the index is searched.
        db: The warehouse file (the index lives beside it).
        settings: Which vector index (`VectorIndexSettings.of`).
        vector: The query's unit vector, embedded with the settings' model.
        limit: How many articles at most.

    Returns:
        The hits, and how many articles the index holds.
    """
    index = VectorIndex(db, settings.model, len(vector), exact_limit=settings.exact_limit,
                        search_depth=settings.search_depth, fallback_model=settings.fallback_model)
    key = (str(Path(db).resolve()), index.model, index.dimensions, index.exact_limit, index.search_depth, index.fallback_model)
    with _vector_lock:  # one search at a time brings the kept index up to date and reads it
        with connect() as connection:
            saved_at = _saved_at(index.state_path)
            kept = _vector_indexes.pop(key, None)  # half brought up to date on a failure: loaded afresh next time
            if kept is not None and kept[0] == saved_at:
                index = kept[1]
            index.sync(connection)  # in memory only: the runs save it
        _vector_indexes[key] = (saved_at, index)  # kept only once brought up to date
        (found,) = index.search(np.asarray(vector, dtype=np.float32)[None, :], limit)  # the file is let go by now
        held = len(index)
    return sorted(found.items(), key=lambda item: -item[1]), held


def semantic_search(
    connect: Connect, db: Path, settings: VectorIndexSettings, vector, *, since: datetime | None, limit: int
) -> tuple[list[SearchResult], int]:
    """The stored articles nearest in meaning to a query vector, most similar first, and how many articles the vector index holds."""
    hits, held = nearest_articles(connect, db, settings, vector, limit=limit * SINCE_OVER_FETCH if since is not None else limit)
    with connect() as connection:
        return found_articles(connection, hits, since=since, limit=limit), held
