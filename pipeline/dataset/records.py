"""The records that flow through a job, and the Parquet schemas they are written with.

The pair schema is the contract with the trainer: it reads these columns and nothing else
of the generation side. Every column is documented in docs/dataset.md.
"""

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import pyarrow as pa


def content_hash(text: str) -> str:
    """Stable id for a document that came without one: its content's hash."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Document:
    """One passage from the corpus."""

    doc_id: str
    text: str
    title: str | None = None
    language: str | None = None

    @cached_property
    def key(self) -> str:
        """The content key (id and text): what tells a new or changed document from one a
        dataset already covered, and what a corpus fingerprint is made of. Computed once:
        every sample of every plan of the document names its plan by it, at each stage."""
        return hashlib.sha256(f"{self.doc_id}\0{self.text}".encode()).hexdigest()[:24]


@dataclass
class Candidate:
    """A document on its way to becoming a pair: the plan, then each stage's output."""

    doc: Document
    task: str
    query_language: str
    query_words: int
    personas: list[str]
    persona: str | None = None
    question_type: str | None = None
    difficulty: str | None = None
    query: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # every stage output, by key
    positive: str | None = None  # None: the document's text is the positive
    negative: str | None = None  # a hard negative the generator wrote, if the task has one
    instruction: str | None = None  # the pair's training instruction
    clarity: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    vector: Any = None  # the query's embedding (numpy), computed once, shared by later stages
    positive_vector: Any = None  # the positive's embedding, when it is not the document
    negatives: list[str] = field(default_factory=list)
    negative_scores: list[float] = field(default_factory=list)
    # The teacher's scores of (positive, *negatives) in record order; None where it gave none.
    teacher_scores: list[float | None] = field(default_factory=list)
    plan: int = 0  # which of its document's plans (`queries_per_document`) it is
    samples: int = 1  # answers its plan draws at the family's last stage (the task's `samples`)
    sample: int = 0  # which of those answers it is

    @property
    def plan_key(self) -> tuple[str, str, int]:
        """The plan it answers: the samples of one plan share it, and one becomes a pair."""
        return (self.doc.key, self.task, self.plan)

    def another_sample(self, sample: int) -> "Candidate":
        """A copy of this plan for its answer number `sample`: what the checks write
        (outputs, scores, negatives) is its own."""
        return replace(
            self,
            sample=sample,
            outputs=dict(self.outputs),
            scores=dict(self.scores),
            negatives=list(self.negatives),
            negative_scores=list(self.negative_scores),
            teacher_scores=list(self.teacher_scores),
        )

    @property
    def positive_text(self) -> str:
        """The pair's positive: what the task's record names, else the document."""
        return self.doc.text if self.positive is None else self.positive


def plan_count(candidates: list[Candidate]) -> int:
    """How many plans these candidates answer (progress counts plans, not samples)."""
    return len({c.plan_key for c in candidates})


@dataclass
class Reject:
    """Something that did not become a pair, with the stage and the reason why."""

    doc_id: str
    task: str | None
    stage: str
    reason: str
    detail: str
    raw: str | None
    score: float | None = None  # the score that failed its threshold, if the stage has one


PAIR_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("positive", pa.string(), nullable=False),
        pa.field("negatives", pa.list_(pa.string()), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("doc_language", pa.string()),
        pa.field("persona", pa.string()),
        pa.field("question_type", pa.string()),
        pa.field("difficulty", pa.string()),
        pa.field("clarity", pa.string()),
        pa.field("query_words_requested", pa.int32()),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("template_hash", pa.string(), nullable=False),
        pa.field("sampling", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("score_query_words", pa.int32()),
        pa.field("score_copy_ratio", pa.float32()),
        pa.field("score_ngram_overlap", pa.float32()),
        pa.field("score_language_confidence", pa.float32()),
        pa.field("score_consistency", pa.float32()),
        pa.field("score_round_trip_rank", pa.int32()),
        pa.field("score_llm_judge", pa.float32()),
        pa.field("negative_scores", pa.list_(pa.float32()), nullable=False),
        pa.field("teacher_scores", pa.list_(pa.float32()), nullable=False),
    ]
)

REJECT_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("task", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("score", pa.float64()),
    ]
)


def pair_id(doc_id: str, task: str, query: str) -> str:
    """Deterministic id of a pair (document, task, query), so two runs agree on identity."""
    return hashlib.sha256(f"{doc_id}\x1f{task}\x1f{query}".encode()).hexdigest()[:20]


def reject_row(reject: Reject) -> dict[str, Any]:
    """A reject as a row of REJECT_SCHEMA."""
    return {
        "doc_id": reject.doc_id,
        "task": reject.task,
        "stage": reject.stage,
        "reason": reject.reason,
        "detail": reject.detail,
        "raw": reject.raw,
        "score": reject.score,
    }
