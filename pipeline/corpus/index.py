"""The corpus index: every document of the job, embedded once; its nearest documents for
a query found exactly below a size, through a graph above it (pipeline.corpus.nearest).
Vectors are unit length, so scores are cosines.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.corpus.nearest import BLOCK, EXACT_BELOW, Graph, exact_top
from pipeline.dataset.records import Document
from pipeline.dedup.text import text_key

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


@dataclass
class CorpusIndex:
    """Documents and their unit vectors, with row lookup by document id and each text's
    exact-duplicate key (so mining can tell a positive's twin without rehashing)."""

    doc_ids: list[str]
    texts: list[str]
    vectors: np.ndarray
    rows: dict[str, int]
    keys: list[str]
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
    def from_vectors(
        cls,
        documents: list[Document],
        vectors: np.ndarray,
        state: Path | None = None,
        exact_below: int = EXACT_BELOW,
    ) -> "CorpusIndex":
        """The index of documents embedded elsewhere (a Ray job's workers, the dataset's
        stored vectors)."""
        texts = [d.text for d in documents]
        ids = [d.doc_id for d in documents]
        keys = [text_key(t) for t in texts]
        return cls(ids, texts, vectors, _rows(documents), keys, state, exact_below)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to Ray workers) without the open graph: each process opens the file."""
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
        """Cosine of each query against every document (queries x documents)."""
        return (
            np.concatenate(
                [queries[i : i + BLOCK] @ self.vectors.T for i in range(0, len(queries), BLOCK)]
            )
            if len(queries)
            else np.zeros((0, len(self.doc_ids)), dtype=np.float32)
        )

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


def _rows(documents: list[Document]) -> dict[str, int]:
    """Row by document id. Two texts under one id would score one's queries against the
    other (the reader lets no such corpus through: pipeline.corpus.doc_ids), so they are refused
    here too; a twin (the same text under its content-hash id) keeps the first row, which
    holds the same vector."""
    rows: dict[str, int] = {}
    for i, doc in enumerate(documents):
        first = rows.setdefault(doc.doc_id, i)
        if first != i and documents[first].text != doc.text:
            raise ValueError(
                f"duplicate document id {doc.doc_id!r} for two texts (rows {first} and {i})"
            )
    return rows
