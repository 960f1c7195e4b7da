"""The minimal pair filters: empty or over-long queries, queries copied from the passage
or from a prompt's few-shot examples.

Each filter computes a score that is kept on the record (so a later, stricter pass can
re-filter without regenerating) and rejects with a reason code when the score fails.
"""

import re
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.registry import Check, per_candidate, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context

WORD = re.compile(r"\w+", re.UNICODE)
COPY_MIN_WORDS = 4  # keyword queries of 1-3 words legitimately reuse the passage's terms


class MinimalFilter(Strict):
    """The minimal filters' limits: keys at the top of `filters:`, where they predate the
    other checks' sections (the assembled FiltersConfig is a subclass of this)."""

    min_query_words: int = Field(1, ge=1)
    max_query_words: int = Field(40, ge=1)
    max_query_chars: int = Field(300, ge=1)
    max_copy_ratio: float = Field(
        0.9, gt=0, le=1, description="reject if this share of the query is copied verbatim"
    )


def words(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped."""
    return WORD.findall(text.lower())


def copy_ratio(query: list[str], passage: list[str]) -> float:
    """Share of the query's words in its longest run found verbatim in the passage."""
    if not query:
        return 0.0
    haystack = f" {' '.join(passage)} "
    for size in range(len(query), 0, -1):
        for start in range(len(query) - size + 1):
            if f" {' '.join(query[start : start + size])} " in haystack:
                return size / len(query)
    return 0.0


def check_pair(
    candidate: Candidate,
    config: MinimalFilter,
    examples: frozenset[tuple[str, ...]] = frozenset(),
    bounds: bool = True,
    copy: bool = True,
) -> Reject | None:
    """Score the candidate's query; return a Reject if it fails a filter, else None.

    `examples` holds the few-shot example queries (as word tuples): small models often
    echo them instead of writing a query for the passage. Families whose query is long by
    design (long-long matching) skip the word `bounds`; those whose query is taken from the
    passage (STS, bitext, classification) skip the `copy` tests.
    """
    query = (candidate.query or "").strip()
    query_words = words(query)
    passage_words = words(candidate.doc.text)
    candidate.scores["query_words"] = len(query_words)
    candidate.scores["copy_ratio"] = ratio = copy_ratio(query_words, passage_words)

    def reject(reason: str, detail: str) -> Reject:
        return Reject(candidate.doc.doc_id, candidate.task, "filter", reason, detail, query)

    if not query_words:
        return reject("empty_query", "query has no words")
    if tuple(query_words) in examples:
        return reject("copied_from_example", "query repeats a few-shot example")
    if candidate.positive is not None and query_words == words(candidate.positive):
        return reject("positive_is_query", "the written positive repeats the query")
    if bounds and len(query_words) < config.min_query_words:
        return reject("query_too_short", f"{len(query_words)} words < {config.min_query_words}")
    if bounds and (
        len(query_words) > config.max_query_words or len(query) > config.max_query_chars
    ):
        detail = f"{len(query_words)} words, {len(query)} chars"
        return reject("query_too_long", detail)
    if not copy:
        return None
    if query_words == passage_words:
        return reject("query_is_passage", "query equals the passage")
    if len(query_words) >= COPY_MIN_WORDS and ratio >= config.max_copy_ratio:
        return reject("copied_from_passage", f"{ratio:.2f} of the query is copied verbatim")
    return None


@register(
    "filter",
    order=100,
    settings=MinimalFilter,
    inline=True,
    every_family=True,
    family_checks=("bounds", "copy"),
    reasons={
        "empty_query": "the query has no words",
        "copied_from_example": "echoes a few-shot example",
        "positive_is_query": "a written positive, e.g. an STS paraphrase, that repeats the query",
        "query_too_short": "fewer words than `min_query_words` (`bounds`)",
        "query_too_long": "more words than `max_query_words` or characters than "
        "`max_query_chars` (`bounds`)",
        "query_is_passage": "the query is the whole passage (`copy`)",
        "copied_from_passage": "at least `max_copy_ratio` of a query of 4+ words is one run "
        "copied from the passage (`copy`)",
    },
)
def minimal_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """Every family's pairs; the word `bounds` and the `copy` tests only where the family
    lists them."""
    # Imported here: pipeline.generation imports the job config, which imports this module.
    from pipeline.generation.stages import example_queries

    examples = {task.type: example_queries(library, task.type) for task in config.tasks}
    filters = config.filters

    def minimal(c: Candidate) -> Reject | None:
        spec = library.task(c.task)
        bounds, copy = spec.applies("bounds"), spec.applies("copy")
        return check_pair(c, filters, examples[c.task], bounds, copy)

    return per_candidate(minimal)
