"""The corpus index: every document of the job, embedded once; its nearest documents for
a query found exactly below a size, through a graph above it (pipeline.corpus.nearest).
Vectors are unit length, so scores are cosines.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.corpus.columns import CorpusColumns
from pipeline.corpus.nearest import EXACT_BELOW, Graph, exact_top
from pipeline.dataset.records import Document

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


@dataclass
class CorpusIndex:
    """Documents (ids, texts, each text's exact-duplicate key, so mining can tell a
    positive's twin without rehashing: pipeline.corpus.columns) and their unit vectors."""

    columns: CorpusColumns
    vectors: np.ndarray
    # The folder of what is derived from this corpus state: the graph of a corpus of
    # `exact_below` documents or more, BM25 (None: built in memory by each process).
    state: Path | None = None
    exact_below: int = EXACT_BELOW
    _graph: Graph | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        documents: list[Document],
        embedder: "Embedder",
        on_done: Callable[[int], None] | None = None,
    ) -> "CorpusIndex":
        vectors = embedder.encode_documents([d.text for d in documents], on_done=on_done)
        return cls.from_vectors(documents, vectors)

    @classmethod
    def from_vectors(cls, documents: list[Document], vectors: np.ndarray) -> "CorpusIndex":
        """The index of documents held in memory, embedded elsewhere (validation's split)."""
        return cls(CorpusColumns.from_documents(documents), vectors)

    @property
    def doc_ids(self) -> Sequence[str]:
        return self.columns.doc_ids

    @property
    def texts(self) -> Sequence[str]:
        return self.columns.texts

    @property
    def keys(self) -> Sequence[str]:
        return self.columns.keys

    @property
    def rows(self) -> Mapping[str, int]:
        """A document's row by its id (a twin's first)."""
        return self.columns.rows

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to Ray workers) without the open graph, which each process opens from
        its file; the columns go by their file's path (pipeline.corpus.columns) and the
        vectors as Ray sends arrays: one copy in each node's object store, which the actors
        read without copying."""
        return self.__dict__ | {"_graph": None}

    def top(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of each query's `k` nearest documents, best first: exact below
        `exact_below` documents, else from the graph (row -1, score -inf where it found
        fewer)."""
        if self.exhaustive:
            return exact_top(self.vectors, queries, k)
        if self._graph is None:
            self._graph = Graph.open(self.vectors, self.state)
        return self._graph.top(queries, k)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """Cosine of each query against every document (queries x documents): one table,
        which callers keep small by scoring their queries in `query_blocks`."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        return queries @ self.vectors.T

    def positive_scores(self, queries: np.ndarray, doc_ids: list[str]) -> np.ndarray:
        """Cosine of each query with its own document."""
        rows = [self.rows[d] for d in doc_ids]
        return np.einsum("ij,ij->i", queries, self.vectors[rows])

    @property
    def exhaustive(self) -> bool:
        """Whether each query is scored against every document (below `exact_below`); above
        it only a query's nearest documents are (the graph, the fused teacher's candidates)."""
        return len(self.doc_ids) < self.exact_below

    def ranks(self, queries: np.ndarray, doc_ids: list[str], depth: int) -> np.ndarray:
        """1-based rank of each query's own document among all documents (ties count
        against it: a document scoring the same is ranked above). Above `exact_below` only
        the `depth` nearest are ranked, so time per query does not grow with the corpus: a
        document beyond them gets `depth + 1`."""
        if self.exhaustive:
            return self.ranks_in(self.scores(queries), doc_ids)
        rows, scores = self.top(queries, depth)
        own = np.array([self.rows[d] for d in doc_ids])[:, None]
        found = (rows == own).any(axis=1)
        mine = np.where(rows == own, scores, np.inf).min(axis=1)
        return np.where(found, (scores >= mine[:, None]).sum(axis=1), depth + 1)

    def ranks_in(self, scores: np.ndarray, doc_ids: list[str]) -> np.ndarray:
        """`ranks` from a score table already computed (queries x documents)."""
        own = scores[np.arange(len(doc_ids)), [self.rows[d] for d in doc_ids]]
        return (scores >= own[:, None]).sum(axis=1)
