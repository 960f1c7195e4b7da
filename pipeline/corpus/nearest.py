"""The nearest corpus documents of query vectors: exact search below `EXACT_BELOW`
documents, an HNSW graph above it.

Exact search scores every document for every query (a matrix product, blockwise): simple,
and on a CPU fast enough up to ~100k documents, but its time per query grows with the
corpus, so a job's time grows with the square of it. A graph answers a query in about
log N, at a recall the bench measures against exact search (`bench/nearest.py`, recall@100).

The graph is usearch's: one file that can be saved and opened as a memory-mapped view (the
OS pages it in and shares it between processes on a node, so a run, its refresh and every
worker read one copy without loading it), float32 inner product on the unit vectors, and a
pip wheel with no system dependency. faiss-cpu's HNSW reads its index whole into memory
(an mmap'ed IVF needs a trained quantiser and its own tuning), and hnswlib has had no
release since 2023 and loads whole too.
"""

import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.dataset.writer import atomic_path

if TYPE_CHECKING:
    from usearch.index import Index

EXACT_BELOW = 100_000  # documents; a larger corpus is searched through the graph
CELLS = 1 << 24  # scores in one block's queries x documents table: 64 MiB of float32
# HNSW settings: M, efConstruction and ef; recall@100 >= 0.99 on the bench (bench/nearest.py).
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 512
REBUILD_CHUNK = 65_536  # vectors read back at a time from a saved graph built again
# In a corpus state's folder: its graph, and the graph of an earlier state whose documents
# are the first of this corpus's (a corpus that grew at its end), which the graph grows from.
GRAPH, BASE = "graph.usearch", "base.usearch"
# Queries whose whole beams a corpus graph keeps (`Beams`): a batch's candidates, about 6 KB
# each at the default expansion.
REMEMBERED = 4096


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores): each query's `k` best documents by cosine, best first (tied
    documents in argpartition's order, as mining ranked them before the index had `top`)."""
    k = min(k, len(vectors))
    rows, scores = nothing(len(queries), k)
    if not k:
        return rows, scores
    for block in query_blocks(len(queries), len(vectors)):
        table = queries[block] @ vectors.T
        top = np.argpartition(-table, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(table, top, axis=1), axis=1, kind="stable")
        best = np.take_along_axis(top, order, axis=1)
        rows[block] = best
        scores[block] = np.take_along_axis(table, best, axis=1)
    return rows, scores


def query_blocks(queries: int, documents: int) -> list[slice]:
    """Slices of the queries whose queries x documents tables hold about `CELLS` scores:
    what scores queries against a whole corpus (exact search, the teacher's rows, the
    adapter's lesson, the validation split) holds a few tables of this size, however large
    the corpus (a fixed count of queries a block would grow its tables with the corpus)."""
    step = max(1, CELLS // max(documents, 1))
    return [slice(start, start + step) for start in range(0, queries, step)]


def nothing(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A top table with no document found yet: row -1, score -inf."""
    return (np.full((queries, k), -1, dtype=np.int64),
            np.full((queries, k), -np.inf, dtype=np.float32))  # fmt: skip


class Graph:
    """An HNSW graph over a corpus's vectors, built once and kept in a file (see module)."""

    def __init__(
        self, index: "Index", expansion: int = EXPANSION_SEARCH, remembered: int = 0
    ) -> None:
        self.index = index
        self.index.expansion_search = expansion
        self.beams = Beams(remembered)

    @classmethod
    def empty(cls, dimension: int, expansion: int = EXPANSION_SEARCH) -> "Graph":
        """A graph with no vector yet, kept in memory, searched at `expansion`."""
        from usearch.index import Index  # a compiled extension: loaded where a graph is used

        return cls(Index(ndim=dimension, metric="ip", dtype="f32", connectivity=CONNECTIVITY,
                         expansion_add=EXPANSION_ADD), expansion)  # fmt: skip

    @property
    def size(self) -> int:
        return len(self.index)

    def save(self, path: Path) -> None:
        """Write the graph to `path` in usearch's format (a run's checkpoint)."""
        self.index.save(str(path))

    @classmethod
    def restored(cls, path: Path, expansion: int) -> "Graph":
        """A graph `save` wrote, built again from its vectors in their order, to grow further.
        Not usearch's restored index: its level generator starts afresh, so it grows another
        graph from the same later vectors than the one saved would have (a resumed run's
        dedup would not be the uninterrupted run's), while a build from the same vectors in
        the same order is the same graph, however they are split into adds."""
        from usearch.index import Index  # a compiled extension: loaded where a graph is used

        saved = Index.restore(str(path), view=True)
        graph = cls.empty(saved.ndim, expansion)
        for start in range(0, len(saved), REBUILD_CHUNK):
            rows = np.arange(start, min(start + REBUILD_CHUNK, len(saved)))
            graph.add(np.asarray(saved.get(rows), dtype=np.float32))
        return graph

    def add(self, vectors: np.ndarray) -> None:
        """Append `vectors` as the next rows. One thread: usearch's concurrent inserts left
        up to 1.3% of a 1,000-vector graph unreachable (2 of 6 builds; tests/test_nearest.py),
        and one thread builds the same graph from the same vectors every time, so a dataset
        rebuilt is the same."""
        start = self.size
        self.index.add(np.arange(start, start + len(vectors)),
                       np.ascontiguousarray(vectors, dtype=np.float32), threads=1)  # fmt: skip

    @classmethod
    def open(cls, vectors: np.ndarray, folder: Path | None) -> "Graph":
        """The graph of `vectors` in its corpus state's folder: read as a memory-mapped view
        where a run saved it, else built, or grown from the folder's base by the rows added
        since (a refresh adds its new documents instead of building again), and saved first,
        whole or not at all (a kill leaves no torn graph); kept in memory only without a
        folder."""
        from usearch.index import Index  # a compiled extension: loaded where a graph is used

        path, base = (folder / GRAPH, folder / BASE) if folder is not None else (None, None)
        if path is not None and path.is_file():
            return cls._view(path)
        if base is not None and base.is_file():
            graph = cls(Index.restore(str(base)))
        else:
            graph = cls.empty(vectors.shape[1])
        graph.add(vectors[graph.size :])
        if path is None or base is None:  # no folder: kept in memory
            return graph
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            graph.index.save(str(tmp))
        base.unlink(missing_ok=True)
        return cls._view(path)

    @classmethod
    def _view(cls, path: Path) -> "Graph":
        """A corpus graph read from its file as a memory-mapped view: the one kind of graph
        that keeps beams (`Beams`), since a view never grows."""
        from usearch.index import Index  # a compiled extension: loaded where a graph is used

        return cls(Index.restore(str(path), view=True), remembered=REMEMBERED)

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) as `exact_top` gives them, from the graph (row -1 and score -inf
        where the graph found fewer than k documents for a query); from the beams kept
        where the graph keeps them (`Beams`: the same results, each query searched once)."""
        k = min(k, self.size)
        if not k or not len(queries) or not self.beams.capacity:
            return self._search(queries, k)
        queries = np.asarray(queries, dtype=np.float32)
        width = max(k, self.index.expansion_search)  # the beam usearch searches for k
        keys = [q.tobytes() for q in queries]
        missing = [n for n, key in enumerate(keys) if self.beams.width(key) != width]
        if missing:
            found = self._search(queries[missing], min(width, self.size))
            self.beams.keep([keys[n] for n in missing], width, *found)
        return self.beams.prefixes(keys, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`top` from one search of the graph."""
        rows, scores = nothing(len(queries), k)
        if not k or not len(queries):
            return rows, scores
        found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k,
                                  threads=os.cpu_count() or 1)  # fmt: skip
        # One query's matches come unbatched: as many as were found, without counts.
        keys = np.asarray(found.keys).reshape(len(queries), -1)
        distances = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1, 1)
        valid = np.arange(keys.shape[1])[None, :] < counts
        rows[:, : keys.shape[1]][valid] = keys[valid].astype(np.int64)
        scores[:, : keys.shape[1]][valid] = 1 - distances[valid]
        return rows, scores


class Beams:
    """Each query's whole beam from a graph's recent searches, by the query's bytes.

    Why: a batch's checks search the corpus graph with the same query vectors up to four
    times (the round trip's pool of 100, the teacher's 256 candidates, mining's 30, the
    teacher again on the pairs kept), a fifth of the run's main thread at a million
    documents. usearch searches a beam of max(k, expansion) and returns its best k, so any
    k within the expansion is a prefix of the whole beam: one search serves them all with
    the results each would have had (usearch's index_gt::search; tests/test_nearest.py).
    The oldest queries go past `capacity`. Only a corpus graph opened from its file keeps
    beams: a view, which never grows, so no beam kept misses a row added later.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.found: OrderedDict[bytes, tuple[int, np.ndarray, np.ndarray]] = OrderedDict()

    def width(self, key: bytes) -> int:
        """The beam a query's kept results come from (0: none kept): they serve a search
        whose beam is the same, so a k past the expansion is searched again."""
        beam = self.found.get(key)
        return 0 if beam is None else beam[0]

    def keep(self, keys: list[bytes], width: int, rows: np.ndarray, scores: np.ndarray) -> None:
        for key, row, score in zip(keys, rows, scores, strict=True):
            self.found[key] = (width, row, score)
            self.found.move_to_end(key)

    def prefixes(self, keys: list[bytes], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `k` of each query's beam (all kept), then the oldest past `capacity`
        forgotten."""
        rows = np.stack([self.found[key][1][:k] for key in keys])
        scores = np.stack([self.found[key][2][:k] for key in keys])
        while len(self.found) > self.capacity:
            self.found.popitem(last=False)
        return rows, scores
