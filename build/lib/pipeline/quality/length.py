"""Length compliance: stage 2 asked for about N words; a query far from N ignored its
requirement, which also skews the length mix the config asked for."""

import math
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.minimal import words
from pipeline.quality.registry import Check, per_candidate, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context


class LengthFilter(Strict):
    """Length compliance: the query's word count near the length stage 2 asked for."""

    enabled: bool = True
    tolerance: float = Field(
        0.5, ge=0, le=10, description="allowed relative deviation from the requested words"
    )
    slack: int = Field(2, ge=0, description="extra words allowed either way (short queries)")


def allowed_words(requested: int, config: LengthFilter) -> tuple[int, int]:
    """The [low, high] word counts accepted for a request of `requested` words."""
    low = math.floor(requested * (1 - config.tolerance)) - config.slack
    high = math.ceil(requested * (1 + config.tolerance)) + config.slack
    return max(1, low), high


def check_length(candidate: Candidate, config: LengthFilter) -> Reject | None:
    """Reject a query whose word count is outside the tolerance around the request."""
    count = len(words(candidate.query or ""))
    low, high = allowed_words(candidate.query_words, config)
    if low <= count <= high:
        return None
    return Reject(
        candidate.doc.doc_id,
        candidate.task,
        "length",
        "length_mismatch",
        f"{count} words, asked for {candidate.query_words} (accepts {low}-{high})",
        candidate.query,
        float(count),
    )


@register(
    "length",
    order=400,
    settings=LengthFilter,
    reasons={
        "length_mismatch": "the word count is outside `tolerance` and `slack` around the "
        "requested length (score: words)"
    },
)
def length_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """The families that list `length`: their plans ask for a length."""
    settings: LengthFilter = config.filters.length
    return per_candidate(lambda c: check_length(c, settings))
