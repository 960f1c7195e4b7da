"""Persona retrieval, as in the Qwen3-Embedding report: each document's candidate personas
are the k most similar to it, so stage 1 picks among people who would plausibly search for
that document instead of among random strangers.

The persona vectors depend only on the embedder and the persona texts, so they are computed
once and cached on disk by content hash.
"""

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config.job import TaskConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Document
from pipeline.dataset.writer import atomic_path

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


def cache_dir() -> Path:
    """Where derived vectors are kept between runs (EMBSYNTH_CACHE, else ~/.cache)."""
    root = (
        os.environ.get("EMBSYNTH_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "embsynth"
    )
    return Path(root)


def _model_identity(path: str) -> list[tuple[str, int, int]]:
    folder = Path(path)
    return sorted(
        (str(f.relative_to(folder)), f.stat().st_size, int(f.stat().st_mtime))
        for f in folder.rglob("*")
        if f.is_file()
    )


def content_key(model_path: str, personas: list[str]) -> str:
    """The cache key: the embedder's files (name, size, mtime) and the persona texts."""
    blob = repr((_model_identity(model_path), personas)).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


class PersonaIndex:
    """Persona vectors, loaded from the cache or computed once, searched exactly."""

    def __init__(self, personas: list[str], embedder: "Embedder") -> None:
        self.personas = personas
        self.embedder = embedder
        path = cache_dir() / "personas" / f"{content_key(str(embedder.path), personas)}.npy"
        self.cached = path.is_file()
        if self.cached:
            self.vectors = np.load(path)
        else:
            self.vectors = embedder.encode_documents(personas)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, tmp.open("wb") as handle:
                np.save(handle, self.vectors)

    def top_k(self, documents: np.ndarray, k: int) -> list[list[str]]:
        """The k personas most similar to each document vector, best first."""
        k = min(k, len(self.personas))
        scores = documents @ self.vectors.T
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[self.personas[i] for i in row] for row in best]


class PersonaChooser:
    """Each document's candidate personas, best first. Documents already in the job's
    corpus index reuse its vectors; others are embedded here."""

    def __init__(self, index: PersonaIndex, corpus: CorpusIndex | None, k: int) -> None:
        self.index = index
        self.corpus = corpus
        self.k = k

    @classmethod
    def for_job(
        cls,
        tasks: list[TaskConfig],
        personas: list[str],
        embedder: "Embedder",
        corpus: CorpusIndex | None,
    ) -> "PersonaChooser":
        """The chooser a job uses: as many candidates as its most demanding task asks."""
        k = max(task.persona_candidates for task in tasks)
        return cls(PersonaIndex(personas, embedder), corpus, k)

    def choose(self, documents: list[Document]) -> list[list[str]]:
        if not documents:
            return []
        corpus = self.corpus
        if corpus is not None and all(d.doc_id in corpus.rows for d in documents):
            vectors = corpus.vectors[[corpus.rows[d.doc_id] for d in documents]]
        else:
            vectors = self.index.embedder.encode_documents([d.text for d in documents])
        return self.index.top_k(vectors, self.k)
