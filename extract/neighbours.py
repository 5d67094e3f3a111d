"""Nearest neighbours among a batch's own articles, so no step compares every pair of a batch.

Dedupe and clustering compare a new article with its nearest stored articles (found through the
vector index beside the warehouse) and with its nearest articles of the same batch (found here).
Up to `exact_limit` vectors the search is exact; beyond, an HNSW graph keeps the cost of a batch
growing as n log n rather than n².
"""

from dataclasses import dataclass

import faiss
import numpy as np

EXACT_LIMIT = 4096
_GRAPH_LINKS = 32
_GRAPH_BUILD_DEPTH = 80


@dataclass(frozen=True)
class BatchNeighbours:
    """For each article of a batch, its nearest other articles of the batch (positions, cosines)."""

    positions: np.ndarray  # (n, k) int64; -1 where fewer than k exist
    similarities: np.ndarray  # (n, k) float32, best first

    def of(self, position: int, floor: float = -1.0) -> list[int]:
        """Positions of one article's neighbours at or above a cosine floor."""
        row, sims = self.positions[position], self.similarities[position]
        return [int(p) for p, s in zip(row, sims) if p >= 0 and s >= floor]


def nearest_in_batch(vectors: np.ndarray, k: int, exact_limit: int = EXACT_LIMIT) -> BatchNeighbours:
    """The `k` nearest other vectors of each vector of a batch (inner product of unit vectors).

    Args:
        vectors: (n, d) unit vectors.
        k: Neighbours per vector.
        exact_limit: Up to this many vectors the search is exact; beyond, approximate (HNSW).
    """
    count = len(vectors)
    k = min(k, max(count - 1, 0))
    if not k:
        return BatchNeighbours(np.full((count, 0), -1, np.int64), np.zeros((count, 0), np.float32))
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if count <= exact_limit:
        index = faiss.IndexFlatIP(data.shape[1])
    else:
        index = faiss.IndexHNSWFlat(data.shape[1], _GRAPH_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _GRAPH_BUILD_DEPTH
        index.hnsw.efSearch = max(2 * (k + 1), 64)
    index.add(data)
    similarities, positions = index.search(data, k + 1)
    # Drop each vector itself (usually first, but ties with exact copies may put it anywhere).
    keep = positions != np.arange(count)[:, None]
    # Rows where the vector was not found among its own results lose their last neighbour instead.
    keep[keep.all(axis=1), -1] = False
    positions = positions[keep].reshape(count, k)
    similarities = similarities[keep].reshape(count, k)
    return BatchNeighbours(positions.astype(np.int64), similarities.astype(np.float32))
