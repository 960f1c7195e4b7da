"""Length compliance: stage 2 asked for about N words; a query far from N ignored its
requirement, which also skews the length mix the config asked for."""

import math

from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.minimal import words
from pipeline.quality.settings import LengthFilter


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
