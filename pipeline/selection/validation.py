"""The validation split as a measure: each held-out pair's query ranked against the whole
corpus by a candidate model, scored by where its own document lands (nDCG@10 and MRR@10,
one relevant document per query) and by how far the top ten agree with the job's fused
teacher's.

Why these and not the test queries: a user has no judged queries. The held-out pairs are
the user's documents with queries the generator wrote for them, so the split sees how well
a model finds a document from such a query; it cannot see what a real user asks that the
generator never writes (docs/training.md, "Choosing the final model").

The corpus is the adapter job's, when the config has one (the documents the model will
search), else the documents of the pairs themselves. Each candidate's corpus vectors are
computed once; a linear adapter's are its parent's through the map, not a new pass.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.adapt.stage import job_documents
from pipeline.config.errors import UserError
from pipeline.config.job import JobConfig, TeacherConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.nearest import query_blocks
from pipeline.dataset.records import Document
from pipeline.embedding.data import Example
from pipeline.embedding.dense import load_dense
from pipeline.embedding.inference import Embedder
from pipeline.embedding.split import document_key
from pipeline.teacher.scorers import FusedTeacher

TOP = 10  # the cut of nDCG, MRR and the teacher's agreement


@dataclass(frozen=True)
class Split:
    """What every candidate is measured on."""

    documents: list[Document]  # the corpus the queries are ranked against
    queries: list[str]  # the held-out pairs' queries
    owners: list[str]  # each query's own document (an id of `documents`)
    teacher: TeacherConfig | None  # the job's fused teacher, when there is a job
    source: str  # where the corpus came from: the adapter job's corpus or the pairs
    unplaced: int  # held-out pairs whose document is not in the corpus (left out)


def validation_split(
    train: Sequence[Example], held: Sequence[Example], job: JobConfig | None
) -> Split:
    """The split of the held-out pairs `held`, against the job's corpus, or without a job
    against every pair's document (`train`'s too: distractors the model has seen)."""
    if job is not None:
        documents = job_documents(job)
        source = f"adapter.job corpus ({job.input.path})"
    else:
        by_key = {document_key(e): e.positive for e in [*train, *held]}
        documents = [Document(key, text) for key, text in by_key.items()]
        source = "the pairs' documents"
    known = {doc.doc_id for doc in documents}
    placed = [e for e in held if document_key(e) in known]
    if not placed:
        raise UserError(
            f"none of the {len(held)} held-out pairs' documents is in {source}: the data "
            "was not generated from this corpus, or its pairs have no doc_id"
        )
    teacher = job.teacher if job is not None else None
    owners = [document_key(e) for e in placed]
    return Split(documents, [e.query for e in placed], owners, teacher, source,
                 len(held) - len(placed))  # fmt: skip


class Validator:
    """Measures candidate models on one split; the first measured (the base model) also
    fixes the teacher's top ten, so every candidate is compared with the same teacher."""

    def __init__(self, split: Split) -> None:
        self.split = split
        self.teacher_top: np.ndarray | None = None

    def index(self, model: Path) -> CorpusIndex:
        """The split's corpus embedded by `model`."""
        with tqdm(total=len(self.split.documents), desc="validation: corpus", unit="doc") as bar:
            return CorpusIndex.build(self.split.documents, Embedder(model), on_done=bar.update)

    def through_head(self, parent: CorpusIndex, model: Path) -> CorpusIndex:
        """The corpus vectors of `model`, its parent's encoder with a bias-free linear map
        after pooling (a linear adapter): the parent's unit vectors through the map,
        normalized, which equals a new pass since the map is linear."""
        head = load_dense(model)
        if head is None:
            raise ValueError(f"{model} has no Dense layer")
        with torch.no_grad():
            vectors = F.normalize(head(torch.from_numpy(parent.vectors)), dim=-1).numpy()
        return CorpusIndex.from_vectors(self.split.documents, vectors)

    def measure(self, model: Path, index: CorpusIndex) -> dict[str, float]:
        """nDCG@10 and MRR@10 of the held-out queries' own documents, and (with a teacher)
        the share of the teacher's top ten in the model's. A model whose vectors are not
        finite scores 0: its ranking means nothing. The queries go in blocks (`query_blocks`), so
        memory stays that of a few blocks x corpus tables however many queries are held out."""
        queries = Embedder(model).encode_queries(self.split.queries)
        if not (np.isfinite(queries).all() and np.isfinite(index.vectors).all()):
            zero = ["ndcg@10", "mrr@10"] + ["teacher@10"] * (self.split.teacher is not None)
            return dict.fromkeys(zero, 0.0)
        ranks, tops, parts = [], [], query_blocks(len(queries), len(index.doc_ids))
        for rows in parts:
            scores = index.scores(queries[rows])
            ranks.append(index.ranks_in(scores, self.split.owners[rows]))
            tops.append(top(scores))
        rank = np.concatenate(ranks)
        hit = rank <= TOP
        figures = {
            "ndcg@10": float(np.where(hit, 1 / np.log2(rank + 1), 0).mean()),
            "mrr@10": float(np.where(hit, 1 / rank, 0).mean()),
        }
        if self.split.teacher is None:
            return figures
        if self.teacher_top is None:
            teacher = FusedTeacher.from_config(index, self.split.teacher, "z")
            self.teacher_top = np.concatenate([
                top(teacher.corpus_scores(self.split.queries[rows], queries[rows]))
                for rows in parts
            ])  # fmt: skip
        mine = np.concatenate(tops)
        shared = [len(set(a) & set(b)) for a, b in zip(mine, self.teacher_top, strict=True)]
        return figures | {"teacher@10": float(np.mean(shared)) / TOP}


def top(scores: np.ndarray) -> np.ndarray:
    """Each row's `TOP` best columns (in no order)."""
    k = min(TOP, scores.shape[1])
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]
