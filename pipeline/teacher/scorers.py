"""Teachers: what scores a query against texts. Each returns, per query, one score per text
(None where it cannot score that text), on the scale of a cosine, so margins compare with
the student's (see pipeline.embedding.losses.margin_mse).

- `fused`: the job's embedder and BM25 (stemmed: pipeline.teacher.lexical) over the job's
  corpus, each z-normalized over the corpus for the query, mixed by weight, and mapped back
  onto the embedder's cosine scale for that query: `z` (mean + std x fused z) or `rank` (the
  document the mix ranks k-th gets the embedder's k-th highest score for the query). With
  `z` a generated query's own document, whose words BM25 finds again, gets margins wider
  than any the embedder gives, so margin-MSE mostly teaches a wider scale; with `rank` the
  targets are the embedder's own scores in the teacher's order, and a margin differs from
  the student's only where the teacher reorders the corpus. With `feedback_docs` k
  (pseudo-relevance feedback, Rocchio's on the dense side) the query vector moves toward the
  mean of the mix's top k documents and the mix is taken again: a short query's vector then
  carries the words its best documents share (on Cranfield that ranks better than the mix;
  docs/teacher.md). It runs offline wherever the job runs and scores corpus
  documents only (a written text has no BM25 statistics: None). Above the index's
  `exact_below` it scores, per query, only its candidates (pipeline.teacher.pooled): the
  texts asked about and the top `depth` documents by the embedder and by BM25, z-scored
  with the corpus's exact statistics; `rank` then ranks them among the candidates, so a
  document below all of them is ranked as if last among them, and positions past the
  embedder's searched top take the normal quantile of its cosines.
- `cross_encoder`: a sentence-transformers `CrossEncoder` folder, scores through its
  activation (sigmoid for one label); any text.
- `llm`: the job's own generator as a yes/no judge under the pair's instruction
  (pipeline.teacher.llm_judge); P(yes), any text.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from pipeline.config.errors import UserError
from pipeline.config.job import TeacherConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.nearest import query_blocks
from pipeline.generation.backends.base import Generator
from pipeline.teacher.lexical import Bm25Index
from pipeline.teacher.llm_judge import judge
from pipeline.teacher.pooled import DEPTH, DenseMoments, ranked_cosines, zscores


@dataclass(frozen=True)
class Scoring:
    """One query and the texts to score for it; `rows` gives each text's corpus row, or None
    for a text that is not a corpus document (a written negative); `instruction` is the
    pair's (what the LLM judge is told the query wants)."""

    query: str
    vector: np.ndarray
    texts: list[str]
    rows: list[int | None]
    instruction: str = ""


class Teacher(Protocol):
    name: str

    def score(self, items: list[Scoring]) -> list[list[float | None]]:
        """Scores per item, one per text, in order."""
        ...


def _z(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row z-scores, and the rows' means and standard deviations."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return zscores(scores, mean, std), mean[:, 0], std[:, 0]


def per_item(items: list[Scoring], flat: list[float | None]) -> list[list[float | None]]:
    """Scores of every item's texts, flattened in item order, split back per item."""
    out, start = [], 0
    for item in items:
        out.append(flat[start : start + len(item.texts)])
        start += len(item.texts)
    return out


class FusedTeacher:
    """The embedder and BM25, z-normalized over the corpus and mixed (see the module).
    BM25 is indexed on first use: a Ray driver builds its actors' stages but never scores."""

    name = "fused"

    def __init__(
        self,
        index: CorpusIndex,
        embedder_weight: float,
        bm25_weight: float,
        scale: Literal["z", "rank"] = "z",
        feedback: tuple[int, float] = (0, 0.0),
        *,
        stemmer: str,
        depth: int = DEPTH,
    ) -> None:
        self.index = index
        self.depth = depth
        self.stemmer = stemmer
        total = embedder_weight + bm25_weight
        self.weights = (embedder_weight / total, bm25_weight / total)
        self.scale = scale
        self.feedback = feedback

    @classmethod
    def from_config(
        cls, index: CorpusIndex, config: TeacherConfig, scale: Literal["z", "rank"]
    ) -> "FusedTeacher":
        feedback = (config.feedback_docs, config.feedback_weight)
        weights = (config.embedder_weight, config.bm25_weight)
        return cls(index, *weights, scale, feedback, stemmer=config.bm25_stemmer)

    def _mix(self, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """The weighted sum of the two z-scored tables."""
        return self.weights[0] * dense + self.weights[1] * lexical

    @cached_property
    def bm25(self) -> Bm25Index:
        root = self.index.state
        return Bm25Index(
            self.index.texts, self.stemmer, root / f"bm25-{self.stemmer}" if root else None
        )

    def corpus_scores(self, queries: list[str], vectors: np.ndarray) -> np.ndarray:
        """The fused score of every corpus document for each query, on the cosine scale."""
        cosines = self.index.scores(vectors)
        dense, mean, std = _z(cosines)
        lexical, _, _ = _z(self.bm25.scores(queries))
        fused = self._mix(dense, lexical)
        docs, weight = self.feedback
        if docs:
            top = np.argsort(-fused, axis=1, kind="stable")[:, : min(docs, fused.shape[1])]
            moved = vectors + weight * self.index.vectors[top].mean(axis=1)
            moved /= np.linalg.norm(moved, axis=1, keepdims=True)
            fused = self._mix(_z(self.index.scores(moved))[0], lexical)
        if self.scale == "z":
            return mean[:, None] + std[:, None] * fused
        out = np.empty_like(cosines)
        order = np.argsort(-fused, axis=1, kind="stable")
        np.put_along_axis(out, order, -np.sort(-cosines, axis=1), axis=1)
        return out

    @cached_property
    def moments(self) -> DenseMoments:
        return DenseMoments.of(self.index.vectors)

    def score(self, items: list[Scoring]) -> list[list[float | None]]:
        if not items:
            return []
        if not self.index.exhaustive:
            return self._pooled(items)
        out = []  # in blocks: a batch's tables against a corpus near `exact_below` are GBs
        for block in query_blocks(len(items), len(self.index.doc_ids)):
            part = items[block]
            table = self.corpus_scores([i.query for i in part], np.stack([i.vector for i in part]))
            out += [[None if row is None else float(table[n, row]) for row in item.rows]
                    for n, item in enumerate(part)]  # fmt: skip
        return out

    def _pooled(self, items: list[Scoring]) -> list[list[float | None]]:
        """`score` from each query's candidates (see the module)."""
        vectors = np.stack([i.vector for i in items])
        tops, cosines = self.index.top(vectors, self.depth)
        means, stds = self.moments.stats(vectors)
        out = []
        for n, item in enumerate(items):
            found = tops[n][tops[n] >= 0]
            asked = np.array([r for r in item.rows if r is not None], dtype=np.int64)
            pool, words = self._pool(item.query, found, asked)
            fused = self._pooled_mix(item.vector, pool, words, (means[n], stds[n]))
            mine = np.searchsorted(pool, asked)  # the asked documents' places in the pool
            if self.scale == "z":
                values = means[n] + stds[n] * fused[mine]
            else:
                positions = np.empty(len(pool), dtype=np.int64)
                positions[np.argsort(-fused, kind="stable")] = np.arange(len(pool))
                stats = (float(means[n]), float(stds[n]))
                values = ranked_cosines(cosines[n][: len(found)], positions[mine], stats,
                                        len(self.index.doc_ids))  # fmt: skip
            scored = iter(values.tolist())
            out.append([None if row is None else next(scored) for row in item.rows])
        return out

    def candidate_scores(
        self, queries: list[str], vectors: np.ndarray, extra: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, its pool (its candidates and its row of `extra` rows, sorted,
        each once) and their fused scores on the z scale, as `corpus_scores` gives them at
        `scale: z`: what a caller that needs a query's best documents and some others asks
        instead of the whole corpus (the adapter's lesson past `exact_below`)."""
        tops, _ = self.index.top(vectors, self.depth)
        means, stds = self.moments.stats(vectors)
        out = []
        for n, query in enumerate(queries):
            pool, words = self._pool(query, tops[n][tops[n] >= 0], extra[n])
            fused = self._pooled_mix(vectors[n], pool, words, (means[n], stds[n]))
            out.append((pool, means[n] + stds[n] * fused))
        return out

    def _pool(
        self, query: str, found: np.ndarray, asked: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A query's pool: the embedder's candidates `found`, BM25's top `depth` and the
        `asked` rows (sorted, each once), with BM25's z-scores of them over the corpus."""
        lexical = self.bm25.scores([query])[0]
        lexical_top = np.argpartition(-lexical, min(self.depth, len(lexical) - 1))
        pool = np.unique(np.concatenate([found, lexical_top[: self.depth], asked]))
        return pool, zscores(lexical[pool], float(lexical.mean()), float(lexical.std()))

    def _pooled_mix(
        self, vector: np.ndarray, pool: np.ndarray, words: np.ndarray, stats: tuple[float, float]
    ) -> np.ndarray:
        """The fused z-scores of the pool's documents for one query, after feedback."""
        documents = self.index.vectors[pool]  # gathered once: feedback scores them again
        fused = self._mix(zscores(documents @ vector, *stats), words)
        docs, weight = self.feedback
        if not docs:
            return fused
        best = np.argsort(-fused, kind="stable")[:docs]
        moved = vector + weight * documents[best].mean(axis=0)
        moved /= np.linalg.norm(moved)
        mean, std = self.moments.stats(moved[None])
        return self._mix(zscores(documents @ moved, mean[0], std[0]), words)


class CrossEncoderTeacher:
    """A sentence-transformers CrossEncoder folder, scoring (query, text) pairs. The model is
    loaded on first use: a Ray driver builds its actors' stages but never scores."""

    name = "cross_encoder"

    def __init__(self, path: str, batch_size: int) -> None:
        self.path, self.batch_size = path, batch_size

    @cached_property
    def model(self) -> Any:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.path, device="cpu")

    def score(self, items: list[Scoring]) -> list[list[float | None]]:
        pairs = [(item.query, text) for item in items for text in item.texts]
        if not pairs:
            return [[] for _ in items]
        flat = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return per_item(items, [float(s) for s in flat])


class LlmTeacher:
    """The job's generator judging each (query, text) under the pair's instruction."""

    name = "llm"

    def __init__(self, generator: Generator) -> None:
        self.generator = generator

    def score(self, items: list[Scoring]) -> list[list[float | None]]:
        triples = [(item.instruction, item.query, text) for item in items for text in item.texts]
        return per_item(items, judge(self.generator, triples))


def check_teacher(config: TeacherConfig) -> None:
    """A teacher's model must be a folder a CrossEncoder loads (checked before any model)."""
    if config.kind != "cross_encoder":
        return
    path = Path(config.model or "")
    if not config.model or not (path / "config.json").is_file():
        raise UserError(f"teacher.model: not a CrossEncoder folder (no config.json): {path}")


def open_teacher(
    config: TeacherConfig, index: CorpusIndex | None, generator: Generator | None
) -> Teacher | None:
    """The job's teacher, or None when it has none."""
    if config.kind == "none":
        return None
    if config.kind == "fused":
        assert index is not None
        return FusedTeacher.from_config(index, config, config.scale)
    if config.kind == "llm":
        assert generator is not None
        return LlmTeacher(generator)
    assert config.model is not None
    return CrossEncoderTeacher(config.model, config.batch_size)
