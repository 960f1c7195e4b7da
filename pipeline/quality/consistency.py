"""The embedding checks: a query must be close to its own passage (consistency) and find it
among the whole corpus (round trip, as in Promptagator). Off-topic queries, the main fault
of small generators, fail both. Query vectors are computed once here and kept on the
candidate for semantic dedup and mining."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from pipeline.config.base import Strict
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.registry import Check, register

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up, and the
    # others import the job config, which imports this module
    from pipeline.config.job import JobConfig
    from pipeline.embedding.inference import Embedder
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context
    from pipeline.teacher.judge import TeacherJudge


class ConsistencyFilter(Strict):
    """Embedding consistency: cosine(query, positive) of the job's embedder."""

    enabled: bool = True
    min_cosine: float = Field(0.3, ge=-1, le=1)


class RoundTripFilter(Strict):
    """Round-trip consistency: the positive ranks within top_k for its query in the corpus."""

    enabled: bool = True
    top_k: int = Field(10, ge=1)
    judge: Literal["student", "teacher"] = Field(
        "student", description="rank by the job's embedder, or re-rank its top 100 by the teacher"
    )


def embed_queries(candidates: list[Candidate], embedder: "Embedder") -> None:
    """Set `vector` on every candidate that has none yet, in one batch. Queries are
    encoded without an instruction: the filters judge the query text itself."""
    todo = [c for c in candidates if c.vector is None]
    if todo:
        vectors = embedder.encode_queries([c.query or "" for c in todo], instruction="")
        for candidate, vector in zip(todo, vectors, strict=True):
            candidate.vector = vector


def embed_positives(candidates: list[Candidate], embedder: "Embedder") -> None:
    """Set `positive_vector` where the positive is a generated text, not the document (the
    corpus index holds the documents' vectors)."""
    todo = [c for c in candidates if c.positive is not None and c.positive_vector is None]
    if todo:
        vectors = embedder.encode_documents([c.positive_text for c in todo])
        for candidate, vector in zip(todo, vectors, strict=True):
            candidate.positive_vector = vector


def _vectors(candidates: list[Candidate]) -> np.ndarray:
    return np.stack([c.vector for c in candidates])


def _verdicts(
    candidates: list[Candidate],
    values: list[float],
    step: str,
    score: str,
    passes: Callable[[float], bool],
    reason: str,
    detail: Callable[[float], str],
) -> list[Reject | None]:
    """Record `values` as the candidates' `score`; reject at `step` where `passes` fails."""
    verdicts: list[Reject | None] = []
    for candidate, value in zip(candidates, values, strict=True):
        candidate.scores[score] = value
        verdicts.append(
            None
            if passes(value)
            else Reject(candidate.doc.doc_id, candidate.task, step, reason, detail(value),
                        candidate.query, float(value))
        )  # fmt: skip
    return verdicts


def check_consistency(
    candidates: list[Candidate], index: CorpusIndex, config: ConsistencyFilter
) -> list[Reject | None]:
    """Reject a query whose cosine with its positive is below `min_cosine`."""
    # The document's vector comes from the corpus index; a generated positive has its own.
    if not candidates:
        return []
    scores = index.positive_scores(_vectors(candidates), [c.doc.doc_id for c in candidates])
    for i, candidate in enumerate(candidates):  # a generated positive: its own vector
        if candidate.positive_vector is not None:
            scores[i] = float(candidate.vector @ candidate.positive_vector)
    return _verdicts(candidates, scores.tolist(), "consistency", "consistency",
                     lambda v: v >= config.min_cosine, "low_consistency",
                     lambda v: f"cosine {v:.3f} < {config.min_cosine}")  # fmt: skip


def check_round_trip(
    candidates: list[Candidate], index: CorpusIndex, config: RoundTripFilter
) -> list[Reject | None]:
    """Reject a query whose positive ranks below `top_k` among the job's corpus."""
    if not candidates:
        return []
    ranks = index.ranks(_vectors(candidates), [c.doc.doc_id for c in candidates], config.top_k)
    size = len(index.doc_ids)
    return _verdicts(candidates, ranks.tolist(), "round_trip", "round_trip_rank",
                     lambda v: v <= config.top_k, "round_trip_miss",
                     lambda v: f"positive ranks {v} of {size} > top {config.top_k}"
                     if index.exhaustive
                     else f"positive not in the top {config.top_k} of {size}")  # fmt: skip


def embedding_check(
    context: "Context", fn: Callable[..., list[Reject | None]], *args: object
) -> Check:
    """A check on query vectors: embeds the batch's queries first (once per candidate)."""

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        assert context.embedder is not None and context.index is not None
        embed_queries(candidates, context.embedder)
        embed_positives(candidates, context.embedder)
        return fn(candidates, context.index, *args)

    return run


def teacher_round_trip(judge: "TeacherJudge") -> Callable[..., list[Reject | None]]:
    """The round trip as the teacher ranks (the index argument is the judge's own)."""
    return lambda candidates, _index, config: judge.round_trip(candidates, config)


@register(
    "consistency",
    order=700,
    settings=ConsistencyFilter,
    needs=frozenset({"embedder", "index"}),
    reasons={"low_consistency": "cosine(query, positive) below `min_cosine` (score: cosine)"},
)
def consistency_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """The families that list `consistency`: the query near its positive."""
    return embedding_check(context, check_consistency, config.filters.consistency)


@register(
    "round_trip",
    order=800,
    settings=RoundTripFilter,
    needs=frozenset({"embedder", "index"}),  # and the teacher with `judge: teacher`
    reasons={
        "round_trip_miss": "the positive ranks below `top_k` in the corpus for its query "
        "(score: rank)"
    },
)
def round_trip_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """The families that list `round_trip` (their positive is the passage)."""
    settings: RoundTripFilter = config.filters.round_trip
    judged = check_round_trip
    if settings.judge == "teacher":
        assert context.teacher is not None  # the job config requires one
        judged = teacher_round_trip(context.teacher)
    return embedding_check(context, judged, settings)
