"""The minimal filters: empty, too short/long, equal to or copied from the passage."""

import pytest

from pipeline.dataset.records import Candidate, Document
from pipeline.quality.minimal import check_pair, copy_ratio, words
from pipeline.quality.registry import FiltersConfig

PASSAGE = "The Danube is the second-longest river in Europe and flows through ten countries."


def candidate(query: str) -> Candidate:
    doc = Document("d1", PASSAGE)
    return Candidate(
        doc=doc, task="retrieval", query_language="en", query_words=5, personas=[], query=query
    )


def test_copy_ratio_is_the_longest_verbatim_run() -> None:
    passage = words(PASSAGE)
    assert copy_ratio(words("how long is the danube"), passage) == pytest.approx(2 / 5)
    assert copy_ratio(words("flows through ten countries"), passage) == 1.0
    assert copy_ratio([], passage) == 0.0


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("  ", "empty_query"),
        ("?!", "empty_query"),
        ("word " * 41, "query_too_long"),
        ("x" * 301, "query_too_long"),
        (PASSAGE, "query_is_passage"),
        ("the second-longest river in Europe", "copied_from_passage"),
    ],
)
def test_rejects(query: str, reason: str) -> None:
    reject = check_pair(candidate(query), FiltersConfig())
    assert reject is not None and reject.reason == reason and reject.stage == "filter"


def test_kept_queries_carry_their_scores() -> None:
    kept = candidate("which countries does the danube cross")
    assert check_pair(kept, FiltersConfig()) is None
    assert kept.scores == {"query_words": 6, "copy_ratio": pytest.approx(2 / 6)}
    # Short keyword queries may reuse the passage's terms.
    assert check_pair(candidate("Danube river"), FiltersConfig()) is None
    assert (
        check_pair(candidate("Danube"), FiltersConfig(min_query_words=2)).reason
        == "query_too_short"
    )


def test_families_skip_bounds_and_copy_but_not_a_repeated_positive() -> None:
    # An STS-like pair: the query is a sentence of the passage, long and copied by design.
    sentence = PASSAGE + " " + PASSAGE
    pair = candidate(sentence)
    assert check_pair(pair, FiltersConfig(max_query_words=5)).reason == "query_too_long"
    assert check_pair(pair, FiltersConfig(max_query_words=5), bounds=False, copy=False) is None
    pair.positive = sentence.upper()  # the "paraphrase" only repeats it
    rejected = check_pair(pair, FiltersConfig(), bounds=False, copy=False)
    assert rejected is not None and rejected.reason == "positive_is_query"
