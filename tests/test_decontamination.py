"""Decontamination: a query equal to an evaluation query, or made of its n-grams, is
rejected with its reason and overlap; an unrelated query passes; bad files are errors."""

from pathlib import Path

import pytest

from pipeline.config.errors import UserError
from pipeline.dataset.records import Candidate, Document
from pipeline.quality.decontamination import DecontaminationFilter, Decontaminator
from pipeline.quality.same_document import same_document
from tests.conftest import write_jsonl

EVAL = [
    {
        "_id": "1",
        "text": "What similarity laws must be obeyed when constructing aeroelastic models?",
    },
    {"_id": "2", "text": "heat transfer in hypersonic boundary layers"},
]


def candidate(query: str, doc: str = "d1") -> Candidate:
    return Candidate(Document(doc, "a passage"), "retrieval", "en", 6, [], query=query)


def test_planted_overlap_is_rejected_with_its_reason(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    beir.mkdir()
    write_jsonl(beir / "queries.jsonl", EVAL[:1])
    plain = write_jsonl(tmp_path / "more.jsonl", [{"query": EVAL[1]["text"]}])
    check = Decontaminator(DecontaminationFilter(files=[beir, plain])).check

    exact = check(candidate("  WHAT similarity laws must be obeyed, when constructing aeroelastic "
                            "models"))  # fmt: skip
    assert exact is not None and exact.reason == "eval_query" and exact.stage == "decontamination"
    planted = candidate("which similarity laws must be obeyed when constructing aeroelastic wings")
    verdict = check(planted)
    assert verdict is not None and verdict.reason == "eval_overlap"
    # 4-grams of the query: 7, of which 5 are in the evaluation query.
    assert verdict.score == pytest.approx(5 / 7) and planted.scores["eval_overlap"] == verdict.score
    assert check(candidate("Heat transfer in hypersonic boundary layers!")) is not None
    assert check(candidate("boundary layer transition on swept wings at high speed")) is None


def test_bad_query_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such query file"):
        Decontaminator(DecontaminationFilter(files=[tmp_path / "none.jsonl"]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"id": 2}\n')
    with pytest.raises(UserError, match=r"broken.jsonl:2: no 'text' or 'query' field"):
        Decontaminator(DecontaminationFilter(files=[broken]))


def test_a_documents_repeated_query_is_dropped_once_seen() -> None:
    batch = [candidate("wing flutter"), candidate("Wing flutter!"), candidate("wing flutter", "d2"),
             candidate("flutter speed")]  # fmt: skip
    verdicts = same_document(batch)
    assert [v.reason if v else None for v in verdicts] == [
        None,
        "duplicate_in_document",
        None,
        None,
    ]
