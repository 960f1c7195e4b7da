"""The minimal pair filters: empty or over-long queries, queries copied from the passage
or from a prompt's few-shot examples.

Each filter computes a score that is kept on the record (so a later, stricter pass can
re-filter without regenerating) and rejects with a reason code when the score fails.
"""

import re

from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.settings import FiltersConfig

WORD = re.compile(r"\w+", re.UNICODE)
COPY_MIN_WORDS = 4  # keyword queries of 1-3 words legitimately reuse the passage's terms


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
    config: FiltersConfig,
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
