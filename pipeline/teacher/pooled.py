"""What lets the fused teacher score a query without scoring the whole corpus (above the
index's `exact_below`): the corpus's statistics for its z-scores, exact and cheap, and the
embedder's k-th highest cosine where only the top ones were searched.

Scoring every document for every query costs time per query that grows with the corpus
(a job's time with its square) and a queries x documents table per batch (2 GB for 512
queries over a million documents). The fused score of a document needs only the query's
mean and standard deviation over the corpus on each side: BM25 has them from its one
score row per query (the sparse sums bm25s computes anyway), and the embedder's follow from
the corpus's mean vector and second-moment matrix (mean = q.mu, E[c^2] = q'Mq), computed
once per corpus in one pass over its vectors.
"""

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DEPTH = 256  # each query's nearest documents by the embedder and by BM25: its candidates
BLOCK = 65_536  # vectors read at once for the moments


@dataclass(frozen=True)
class DenseMoments:
    """The corpus's mean unit vector and second-moment matrix (float64)."""

    mean: np.ndarray
    second: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray) -> "DenseMoments":
        """One pass over `vectors` (memory-mapped ones are read a block at a time)."""
        size, dimension = vectors.shape
        total = np.zeros(dimension)
        second = np.zeros((dimension, dimension))
        for start in range(0, size, BLOCK):
            block = np.asarray(vectors[start : start + BLOCK], dtype=np.float64)
            total += block.sum(axis=0)
            second += block.T @ block
        return cls(total / max(size, 1), second / max(size, 1))

    def stats(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each query's mean and (population) standard deviation of its cosines over the
        corpus, as if every document had been scored."""
        q = np.asarray(queries, dtype=np.float64)
        mean = q @ self.mean
        variance = np.einsum("ij,jk,ik->i", q, self.second, q) - mean**2
        return mean, np.sqrt(np.maximum(variance, 0.0))


def zscores(values: np.ndarray, mean: float | np.ndarray, std: float | np.ndarray) -> np.ndarray:
    """(values - mean) / std, with std 0 read as 1 (a query no document tells apart)."""
    return (values - mean) / np.where(np.asarray(std) > 0, std, 1.0)


def ranked_cosines(
    top: np.ndarray, positions: np.ndarray, stats: tuple[float, float], size: int
) -> np.ndarray:
    """The embedder's cosine at each 0-based position of the corpus's descending order:
    from `top` (the query's highest cosines, descending) where it reaches, else the normal
    quantile of the query's cosines at that position (never above the last of `top`)."""
    out = np.empty(len(positions), dtype=np.float64)
    inside = positions < len(top)
    out[inside] = top[positions[inside]]
    mean, std = stats
    normal = NormalDist()
    floor = float(top[-1]) if len(top) else np.inf
    for i in np.flatnonzero(~inside):
        tail = min(max((positions[i] + 0.5) / size, 1e-12), 1 - 1e-12)
        out[i] = min(mean + std * normal.inv_cdf(1 - tail), floor)
    return out
