"""What the adapter stage teaches, whichever fit learns it (pipeline.adapt.linear or
pipeline.adapt.encoder): its own module so the stage and both fits share it without a
circle.

Where the teacher's whole table (queries x corpus) would not fit `whole_table_gib`, each
query is taught some of the corpus: its `top` best documents by the teacher and `sampled`
others drawn at random from the rest, so the lesson's memory grows with queries x (top +
sampled), linearly with the corpus (the crops are per document), instead of with its square
(40 GB at 20,000 documents). Below that, every query is taught every document, in corpus
order: the whole table, exact. Past the index's `exact_below` the best documents come from
the teacher's candidates (pipeline.teacher.pooled) instead of a scored row of the whole
corpus, so a query's time does not grow with the corpus either.
"""

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.corpus.index import CorpusIndex
from pipeline.teacher.scorers import FusedTeacher

# Queries whose candidates are scored at once past `exact_below`: a block's tables are its
# candidates' (not the corpus's), so a fixed count bounds them at any corpus size.
POOLED = 512


@dataclass(frozen=True)
class Lesson:
    """What the adapter learns from: the model's vectors of every corpus document and of
    each query (the given ones, the logged ones, then the corpus crops), the corpus rows
    each query is taught and the teacher's scores of them (queries x taught)."""

    index: CorpusIndex
    texts: list[str]
    vectors: np.ndarray
    rows: np.ndarray
    targets: np.ndarray
    logged: int  # of the texts, how many came from the query files
    # Per taught column, the log of how many documents it stands for (sampled_weights).
    weights: np.ndarray | None = None


def every_row(queries: int, size: int) -> np.ndarray:
    """The taught rows of the whole table: every document for every query (a view, no
    memory of its own)."""
    return np.broadcast_to(np.arange(size), (queries, size))


def taught(
    table: np.ndarray, top: int, sampled: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, targets) of a block of queries from the teacher's scores of the whole corpus
    (queries x corpus): each query's `top` best rows (best first) and `sampled` rows drawn
    without replacement from the others."""
    size = table.shape[1]
    best = np.argpartition(-table, top - 1, axis=1)[:, :top]
    best = np.take_along_axis(best, np.argsort(-np.take_along_axis(table, best, 1), 1), 1)
    others = np.empty((len(table), sampled), dtype=np.int64)
    for n, kept in enumerate(np.sort(best, axis=1)):
        # The j-th row not kept is j plus the number of kept rows at or below it.
        drawn = rng.choice(size - top, sampled, replace=False)
        others[n] = drawn + np.searchsorted(kept - np.arange(top), drawn, side="right")
    rows = np.concatenate([best, others], axis=1)
    return rows, np.take_along_axis(table, rows, axis=1)


def taught_pooled(
    teacher: FusedTeacher,
    queries: list[str],
    vectors: np.ndarray,
    top: int,
    sampled: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`taught` without a row of the whole corpus per query: each query's `top` best of its
    candidates and of `top + sampled` documents drawn from the whole corpus (scored
    together, so a drawn document that ranks among the best is taught as one), then
    `sampled` of the drawn ones not among the best: a uniform draw from the rest."""
    size = len(teacher.index.doc_ids)
    drawn = np.stack([rng.choice(size, top + sampled, replace=False) for _ in queries])
    rows = np.empty((len(queries), top + sampled), dtype=np.int64)
    targets = np.empty((len(queries), top + sampled), dtype=np.float32)
    for n, (pool, scores) in enumerate(teacher.candidate_scores(queries, vectors, drawn)):
        best = np.argsort(-scores, kind="stable")[:top]
        others = drawn[n][~np.isin(drawn[n], pool[best])][:sampled]
        rows[n] = np.concatenate([pool[best], others])
        targets[n] = np.concatenate([scores[best], scores[np.searchsorted(pool, others)]])
    return rows, targets


def sampled_weights(top: int, sampled: int, size: int) -> np.ndarray:
    """The log weight of each taught column in both softmaxes: 0 for the teacher's best,
    log((size - top) / sampled) for a sampled document, which stands for that many of the
    rest (sampled softmax): without it the rest of the corpus weighs `sampled` documents'
    worth, and the student may raise every untaught document unopposed (measured: 0.7
    nDCG@10 lost on Cranfield, docs/benchmarks.md)."""
    weights = np.zeros(top + sampled, dtype=np.float32)
    weights[top:] = np.log((size - top) / sampled) if sampled else 0.0
    return weights


def distinct(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct corpus rows of a batch's taught rows and where each taught row is among
    them: a fit scores each document once per step, then gathers."""
    unique, inverse = np.unique(rows, return_inverse=True)
    return torch.from_numpy(unique), torch.from_numpy(inverse.reshape(rows.shape))
