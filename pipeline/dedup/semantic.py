"""Semantic dedup: a query whose embedding is within `threshold` cosine of a kept query
says the same thing in other words (a paraphrase that MinHash cannot see).

Each new query is compared with every kept one: time per query grows with the kept
queries, a job's time with their square (about an hour of two cores at a million). From
`exact_below` kept queries on (the job's `embedder.exact_below`, as the corpus index) they
are searched through an HNSW graph instead (pipeline.corpus.nearest), which holds their
vectors: a repeat sits so close to the query it repeats that the graph's nearest is it.
"""

import numpy as np

from pipeline.corpus.nearest import EXACT_BELOW, Graph
from pipeline.dedup.blocks import RowBlocks

# The graph's search expansion for a query's one nearest kept query. The corpus's graph
# searches at 512 for recall@100; a repeat is found at far less (bench/semantic_graph.py,
# 100,000 kept vectors, 1,000 repeats at cosine 0.95-0.99: every one found at 64 and up,
# 996 at 32), and 128 searches in 0.82 ms a query against 2.69 ms at 512.
REPEAT_EXPANSION = 128


class SemanticDuplicates:
    """Unit vectors of kept queries; `check` keeps the first of each close group.

    The kept vectors are held in blocks (pipeline.dedup.blocks), so a batch is compared block
    by block (memory bounded however many queries were kept) and a batch's new vectors are
    appended without copying the earlier ones."""

    def __init__(self, threshold: float, dimension: int, exact_below: int = EXACT_BELOW) -> None:
        self.threshold = threshold
        self.dimension = dimension
        self.exact_below = exact_below
        # The kept vectors until the graph takes them.
        self.vectors: RowBlocks | None = RowBlocks(dimension, np.float32)
        self.keys: list[str] = []
        self.graph: Graph | None = None  # from `exact_below` kept on: the vectors moved in

    def add(self, vectors: np.ndarray, keys: list[str]) -> None:
        """Index vectors as already kept (earlier versions)."""
        if not keys:
            return
        if self.vectors is not None:
            self.vectors.append(vectors)
        elif self.graph is not None:
            self.graph.add(vectors)
        self.keys.extend(keys)
        if self.vectors is not None and len(self.keys) >= max(self.exact_below, 1):
            self.graph = Graph.empty(self.dimension, REPEAT_EXPANSION)
            for part in self.vectors.parts():
                self.graph.add(part)
            self.vectors = None

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each vector's most similar kept vector: (cosine, its index in `keys`; the first
        of equals; the graph's nearest past `exact_below`), or (-1, -1) while none is kept."""
        if self.graph is not None:
            rows, scores = self.graph.top(vectors, 1)
            return scores[:, 0], rows[:, 0]
        best = np.full(len(vectors), -1.0, dtype=np.float32)
        where = np.full(len(vectors), -1, dtype=np.int64)
        offset = 0
        for block in self.vectors.parts() if self.vectors is not None else ():
            table = vectors @ block.T
            column = table.argmax(axis=1)
            score = table[np.arange(len(vectors)), column]
            better = (score > best) | (where < 0)
            best[better], where[better] = score[better], column[better] + offset
            offset += len(block)
        return best, where

    def check(self, vectors: np.ndarray, keys: list[str]) -> list[tuple[str, float] | None]:
        """For each vector: (key of the kept query it repeats, cosine), or None if new
        (then it is kept, so later vectors of the same batch are checked against it)."""
        earlier, matches = self.nearest(vectors)
        accepted: list[int] = []
        found: list[tuple[str, float] | None] = []
        for i in range(len(keys)):
            best, match = -1.0, ""
            if matches[i] >= 0:
                best, match = float(earlier[i]), self.keys[matches[i]]
            if accepted:
                within = vectors[accepted] @ vectors[i]
                j = int(within.argmax())
                if within[j] > best:
                    best, match = float(within[j]), keys[accepted[j]]
            if best >= self.threshold:
                found.append((match, best))
            else:
                accepted.append(i)
                found.append(None)
        self.add(vectors[accepted], [keys[i] for i in accepted])
        return found
