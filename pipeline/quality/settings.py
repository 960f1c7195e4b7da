"""The job config's `filters` section: the quality checks of each pair, each switchable
and with its threshold. Kept apart from pipeline.config.job only for size; load_config reads it
as part of the job."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config.base import Strict


class LengthFilter(Strict):
    """Length compliance: the query's word count near the length stage 2 asked for."""

    enabled: bool = True
    tolerance: float = Field(
        0.5, ge=0, le=10, description="allowed relative deviation from the requested words"
    )
    slack: int = Field(2, ge=0, description="extra words allowed either way (short queries)")


class LanguageFilter(Strict):
    """Language match: lingua's detected language of the query equals the requested one."""

    enabled: bool = True
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="reject only when lingua is at least this sure"
    )
    min_words: int = Field(3, ge=1, description="shorter queries are not judged")


class HeuristicsFilter(Strict):
    """Refusals, meta text, placeholders, passage-dependent questions, n-gram overlap."""

    enabled: bool = True
    ngram: int = Field(3, ge=1, le=8)
    max_ngram_overlap: float = Field(
        0.6, ge=0, le=1, description="reject if this share of the query's n-grams is in the passage"
    )


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


class DecontaminationFilter(Strict):
    """Evaluation queries that training queries must not overlap, so an evaluation on them
    stays honest: JSONL files (a `text` or `query` field per line) or BEIR folders."""

    files: list[Path] = Field([], description="query files or BEIR folders; none: off")
    ngram: int = Field(4, ge=1, le=13, description="words per n-gram")
    max_overlap: float = Field(
        0.5, gt=0, le=1, description="reject if this share of the query's n-grams is in one"
    )


class LlmJudgeFilter(Strict):
    """The job's generator judges every pair of every family under its instruction (yes/no,
    see pipeline.teacher.llm_judge): the one check of a label, partner or title."""

    enabled: bool = False
    min_score: float = Field(0.5, ge=0, le=1, description="the least P(yes) a kept pair has")


class FiltersConfig(Strict):
    """The filters applied to every generated pair, in this order; each can be switched off."""

    min_query_words: int = Field(1, ge=1)
    max_query_words: int = Field(40, ge=1)
    max_query_chars: int = Field(300, ge=1)
    max_copy_ratio: float = Field(
        0.9, gt=0, le=1, description="reject if this share of the query is copied verbatim"
    )
    length: LengthFilter = LengthFilter()
    language: LanguageFilter = LanguageFilter()
    heuristics: HeuristicsFilter = HeuristicsFilter()
    consistency: ConsistencyFilter = ConsistencyFilter()
    round_trip: RoundTripFilter = RoundTripFilter()
    decontamination: DecontaminationFilter = DecontaminationFilter()
    llm_judge: LlmJudgeFilter = LlmJudgeFilter()
