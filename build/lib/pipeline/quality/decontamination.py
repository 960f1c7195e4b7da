"""Decontamination: a training query that repeats an evaluation query (or most of one's
word n-grams) would let a model that memorized it score well on that evaluation, so such
pairs are rejected with the overlap as their score.

Evaluation queries come from JSONL files (one object per line with `text` or `query`) or
BEIR folders (their `queries.jsonl`). Texts are compared after the normalization exact
dedup uses (case, punctuation, spacing), as sets of word n-grams; a query shorter than n
words is one n-gram, so it is caught only by an exact match.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.corpus.reader import read_queries
from pipeline.dataset.records import Candidate, Reject
from pipeline.dedup.text import normalize, shingles
from pipeline.quality.registry import Check, per_candidate, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context

SETTING = "filters.decontamination.files"


class DecontaminationFilter(Strict):
    """Evaluation queries that training queries must not overlap, so an evaluation on them
    stays honest: JSONL files (a `text` or `query` field per line) or BEIR folders."""

    files: list[Path] = Field([], description="query files or BEIR folders; none: off")
    ngram: int = Field(4, ge=1, le=13, description="words per n-gram")
    max_overlap: float = Field(
        0.5, gt=0, le=1, description="reject if this share of the query's n-grams is in one"
    )


class Decontaminator:
    """The n-grams and normalized texts of every evaluation query, and the check."""

    def __init__(self, config: DecontaminationFilter) -> None:
        self.config = config
        self.exact: set[str] = set()
        self.grams: set[str] = set()
        for path in config.files:
            for text in read_queries(path, SETTING):
                normalized = normalize(text)
                self.exact.add(normalized)
                self.grams.update(shingles(normalized, config.ngram))

    def check(self, candidate: Candidate) -> Reject | None:
        """Reject a query equal to an evaluation query, or with too many of its n-grams."""
        normalized = normalize(candidate.query or "")

        def reject(reason: str, detail: str, score: float) -> Reject:
            return Reject(candidate.doc.doc_id, candidate.task, "decontamination", reason,
                          detail, candidate.query, score)  # fmt: skip

        if normalized in self.exact:
            return reject("eval_query", "the query is an evaluation query", 1.0)
        grams = shingles(normalized, self.config.ngram) if normalized else []
        if not grams:
            return None
        overlap = sum(g in self.grams for g in grams) / len(grams)
        candidate.scores["eval_overlap"] = overlap
        if overlap >= self.config.max_overlap:
            return reject(
                "eval_overlap",
                f"{overlap:.0%} of its {self.config.ngram}-grams are in evaluation queries",
                overlap,
            )
        return None


@register(
    "decontamination",
    order=300,
    settings=DecontaminationFilter,
    enabled=lambda config: bool(config.filters.decontamination.files),
    every_family=True,
    reasons={
        "eval_query": "the query is an evaluation query (score: 1)",
        "eval_overlap": "at least `max_overlap` of its word n-grams are in evaluation queries "
        "(score: that share)",
    },
)
def decontamination_check(
    config: "JobConfig", library: "PromptLibrary", context: "Context"
) -> Check:
    """Every family: any training query can leak into an evaluation."""
    return per_candidate(Decontaminator(config.filters.decontamination).check)
