"""The nearest-neighbour index of stored article vectors, kept beside the DuckDB file.

Dedupe and clustering need, for each new article, only the stored articles most similar to it
and the stories those belong to. Finding them by comparing with every stored vector would cost
more with every article stored, so the vectors of one embedding model are also kept in a faiss
index in ``<db>.vectors/``:

- up to `exact_limit` vectors, an exact inner-product index (cosine on unit vectors);
- beyond, an HNSW graph over 8-bit scalar-quantised vectors (about 0.65 KiB per article), whose
  search cost grows with the logarithm of the number stored. Candidates it returns are scored again
  with the exact float vectors from DuckDB, so quantisation moves no verdict threshold.

DuckDB stays the source of truth. A small JSON file records how many articles the index had seen
and the latest `ingested_at` it covers; `sync` compares that with the table and adds only the
articles loaded since (loads are whole batches, so `ingested_at` marks them). An index that is
missing, unreadable, for another model, or that disagrees with the table is rebuilt from DuckDB.
Only a writer (the flow that holds the run lock) syncs and saves it; files are replaced
atomically.
"""

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from hashlib import sha256
from pathlib import Path

import duckdb
import faiss
import numpy as np
import pyarrow as pa

from warehouse.connection import WarehouseError
from warehouse.sql import execute, vectors_of

logger = logging.getLogger(__name__)

FORMAT = 1
_READ_BATCH = 50_000


@dataclass
class IndexState:
    """What the index on disk covers."""

    model: str
    dimensions: int
    kind: str
    vectors: int
    articles: int
    through: str | None
    format: int = FORMAT


def index_folder(db: Path) -> Path:
    """Where the vector indexes of a warehouse live."""
    return Path(f"{db}.vectors")


def discard_indexes(db: Path) -> None:
    """Remove every vector index of a warehouse (they are rebuilt from DuckDB when next needed)."""
    shutil.rmtree(index_folder(db), ignore_errors=True)


def keys_of(article_ids: list[str]) -> np.ndarray:
    """faiss ids (int64) of article ids (16 hex digits)."""
    return np.array([int(article_id, 16) for article_id in article_ids], dtype=np.uint64).view(np.int64)


def article_ids_of(keys: np.ndarray) -> list[str]:
    """Article ids of faiss ids."""
    return [f"{key:016x}" for key in np.asarray(keys, dtype=np.int64).view(np.uint64)]


class VectorIndex:
    """Stored article vectors of one embedding model, searchable by cosine similarity."""

    def __init__(
        self, db: Path, model: str, dimensions: int, exact_limit: int = 50_000, neighbours_per_node: int = 32,
        search_depth: int = 512, fallback_model: str | None = None,
    ):
        self.db = Path(db)
        self.model = model
        # Texts without a vector of `model` are indexed by their `fallback_model` one (`warehouse.sql.vectors_of`).
        self.fallback_model = fallback_model
        self.dimensions = dimensions
        self.exact_limit = exact_limit
        self.neighbours_per_node = neighbours_per_node
        self.search_depth = search_depth
        name = sha256(model.encode("utf-8")).hexdigest()[:12]
        self.path = index_folder(self.db) / f"{name}.faiss"
        self.state_path = index_folder(self.db) / f"{name}.json"
        self.index: faiss.Index | None = None
        self.state: IndexState | None = None
        self.changed = False

    # --- reading and writing the files ---

    def load(self) -> bool:
        """Read the index from disk; False when it is missing, unreadable or for something else."""
        try:
            state = IndexState(**json.loads(self.state_path.read_text(encoding="utf-8")))
            if (state.format, state.model, state.dimensions) != (FORMAT, self.model, self.dimensions):
                return False
            index = faiss.read_index(str(self.path))
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            if not isinstance(error, FileNotFoundError):
                logger.warning("vector index %s is unreadable (%s); rebuilding it", self.path, error)
            return False
        if index.ntotal != state.vectors or index.d != self.dimensions:
            return False
        self.index, self.state = index, state
        return True

    def save(self) -> None:
        """Write the index and its state atomically (the state last, so a torn save reads as stale)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".faiss.tmp")
        try:
            faiss.write_index(self.index, str(temporary))
            os.replace(temporary, self.path)
            temporary = self.state_path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(asdict(self.state)), encoding="utf-8")
            os.replace(temporary, self.state_path)
        except (OSError, RuntimeError) as error:  # faiss reports a failed write as a RuntimeError
            temporary.unlink(missing_ok=True)  # a full disk keeps no half-written copy
            reason = str(error).strip().splitlines()[0][-200:] if str(error).strip() else type(error).__name__
            raise WarehouseError(f"cannot save the vector index {self.path}: {reason}") from error
        self.changed = False

    # --- keeping up with DuckDB ---

    def sync(self, connection: duckdb.DuckDBPyConnection) -> int:
        """Bring the index up to date with the `articles` table; returns how many vectors it added.

        Loads an index from disk first if none is in memory, adds the articles loaded since it
        was saved, and rebuilds it from scratch when it cannot be trusted.
        """
        count, latest = execute(connection, "SELECT count(*), max(ingested_at) FROM articles")[0]
        latest = latest.isoformat() if latest is not None else None
        if self.index is None and not self.load():
            return self.rebuild(connection, count, latest)
        state = self.state
        if (state.articles, state.through) == (count, latest):
            return 0
        if state.through is not None and latest is not None and state.articles < count and latest > state.through:
            since = datetime.fromisoformat(state.through)
            newer = execute(connection, "SELECT count(*) FROM articles WHERE ingested_at > ?", [since])[0][0]
            if state.articles + newer == count:
                added = self._add_rows(connection, "WHERE a.ingested_at > ?", [since])
                state.articles, state.through = count, latest
                self.changed = True
                if state.kind == "exact" and state.vectors > self.exact_limit:
                    self._to_graph()
                return added
        logger.info("vector index %s disagrees with the warehouse; rebuilding it", self.path)
        return self.rebuild(connection, count, latest)

    def rebuild(self, connection: duckdb.DuckDBPyConnection, count: int | None = None, latest: str | None = None) -> int:
        """Build the index again from every stored vector of this model."""
        if count is None:
            count, latest = execute(connection, "SELECT count(*), max(ingested_at) FROM articles")[0]
            latest = latest.isoformat() if latest is not None else None
        vectors, parameters = vectors_of(self.model, self.fallback_model)
        total = execute(connection, f"SELECT count(*) FROM articles a JOIN {vectors} e ON e.text_hash = a.text_hash", parameters)[0][0]
        kind = "exact" if total <= self.exact_limit else "graph"
        self.index = self._empty(kind)
        self.state = IndexState(self.model, self.dimensions, kind, 0, count, latest)
        if kind == "graph":
            self._train(connection)
        added = self._add_rows(connection, "", [])
        self.state.articles, self.state.through = count, latest
        self.changed = True
        logger.info("built a %s vector index of %d articles", kind, added)
        return added

    def _empty(self, kind: str) -> faiss.Index:
        if kind == "exact":
            inner = faiss.IndexFlatIP(self.dimensions)
        else:
            inner = faiss.IndexHNSWSQ(
                self.dimensions, faiss.ScalarQuantizer.QT_8bit, self.neighbours_per_node, faiss.METRIC_INNER_PRODUCT
            )
            # Measured on 100k clustered vectors: M=16 found an article's own vector in its top 20
            # only 93-98% of the time; M=32 with efConstruction 80 found it always.
            inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner)

    def _train(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Fit the scalar quantiser's ranges on a sample of stored vectors."""
        vectors, parameters = vectors_of(self.model, self.fallback_model)
        sample = execute(connection, f"SELECT e.vector FROM {vectors} e USING SAMPLE 20000 ROWS", parameters)
        vectors = np.asarray([row[0] for row in sample], dtype=np.float32).reshape(-1, self.dimensions)
        self.index.train(vectors)

    def _to_graph(self) -> None:
        """Move a grown exact index to the HNSW graph, with the vectors it already holds."""
        inner = faiss.downcast_index(self.index.index)
        vectors = inner.reconstruct_n(0, self.index.ntotal)
        keys = faiss.vector_to_array(self.index.id_map)
        self.index = self._empty("graph")
        self.index.train(vectors[np.random.default_rng(0).permutation(len(vectors))[:20_000]])
        self.index.add_with_ids(vectors, keys)
        self.state.kind = "graph"
        self.changed = True
        logger.info("vector index grew past %d; moved %d vectors to an HNSW graph", self.exact_limit, len(keys))

    def _add_rows(self, connection: duckdb.DuckDBPyConnection, where: str, parameters: list) -> int:
        vectors, vector_parameters = vectors_of(self.model, self.fallback_model)
        reader = connection.sql(
            f"""
            SELECT a.article_id, e.vector FROM articles a
            JOIN {vectors} e ON e.text_hash = a.text_hash
            {where}
            """,
            params=[*vector_parameters, *parameters],
        ).to_arrow_reader(_READ_BATCH)
        added = 0
        for batch in reader:
            if not batch.num_rows:
                continue
            values = batch.column(1)
            vectors = np.asarray(pa.ListArray.from_arrays(values.offsets, values.values).flatten(), dtype=np.float32)
            self.add(batch.column(0).to_pylist(), vectors.reshape(batch.num_rows, self.dimensions))
            added += batch.num_rows
        return added

    def add(self, article_ids: list[str], vectors: np.ndarray) -> None:
        """Add unit vectors of articles."""
        if not article_ids:
            return
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), keys_of(article_ids))
        self.state.vectors = self.index.ntotal
        self.changed = True

    # --- searching ---

    def __len__(self) -> int:
        return 0 if self.index is None else self.index.ntotal

    def search(self, vectors: np.ndarray, k: int) -> list[dict[str, float]]:
        """The `k` stored articles nearest to each vector: article_id → approximate cosine."""
        if not len(self) or not len(vectors):
            return [{} for _ in range(len(vectors))]
        if self.state.kind == "graph":
            faiss.downcast_index(self.index.index).hnsw.efSearch = max(self.search_depth, k)
        similarities, keys = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self)))
        results = []
        for row_keys, row_similarities in zip(keys, similarities):
            found = row_keys != -1  # faiss pads with -1 when fewer than k were found
            results.append(dict(zip(article_ids_of(row_keys[found]), row_similarities[found].tolist())))
        return results
