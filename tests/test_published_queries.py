"""The query dedup remembers only published queries: a pair the teacher drops (its last
dropping check) blocks none of its duplicates, in the same batch, in a later batch or in a
refresh, and `state/queries.parquet` holds exactly the queries of `data/`.

The queries are scripted (each passage gets the query this test gives it) and the teacher
prefers a negative for chosen passages: a duplicate and a drop on cue cannot be had from a
random model; the run under test (plan, parse, filters, mining, the teacher's drop_pair
policy, dedup, state, refresh) is real."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.dedup.text import normalize
from pipeline.generation.backends.base import Request, Result
from pipeline.run.job import run_job
from pipeline.teacher.scorers import Scoring
from tests.conftest import SAMPLE_CORPUS, write_jsonl

DOCS = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()][:9]
SUGAR = "how do plants turn sunlight into sugar"
MOUNTAIN = "why does water boil at a lower temperature on mountains"


class Scripted:
    """A generator answering each request from its schema: the first choice of every enum,
    and for a `query` the one scripted for the passage in the request (by its text)."""

    model = "scripted"
    settings = None

    def __init__(self, queries: dict[str, str]) -> None:
        self.queries = queries  # passage text (or its start) -> query

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: Any = None
    ) -> list[Result]:
        results = [Result(json.dumps(self._answer(r)), "stop", 10, 5) for r in requests]
        if on_done is not None:
            on_done(len(requests))
        return results

    def _answer(self, request: Request) -> dict[str, str]:
        properties = request.schema["properties"]
        if "query" in properties:
            user = request.messages[-1]["content"]
            return {"query": next(q for text, q in self.queries.items() if text in user)}
        return {key: (spec.get("enum") or ["x"])[0] for key, spec in properties.items()}


def scripted(docs: list[dict[str, Any]], **by_id: str) -> Scripted:
    """Each document's own query (about its title), or the one given for its id."""
    return Scripted({d["text"]: by_id.get(d["id"], f"facts about {d['title'].lower()}")
                     for d in docs})  # fmt: skip


class PrefersANegative:
    """A teacher that scores a negative above the positive for the given passages (and
    the positive first for every other): drop_pair drops exactly their pairs."""

    name = "prefers-a-negative"

    def __init__(self, positives: set[str]) -> None:
        self.positives = positives

    def score(self, items: list[Scoring]) -> list[list[float | None]]:
        return [
            [0.1, *[0.9] * (len(i.texts) - 1)]
            if i.texts[0] in self.positives
            else [0.9, *[0.1] * (len(i.texts) - 1)]
            for i in items
        ]


@pytest.fixture
def teacher_drops(monkeypatch: pytest.MonkeyPatch) -> Callable[[set[str]], None]:
    """Make the job's teacher prefer a negative for the given passages."""

    def install(positives: set[str]) -> None:
        fake = PrefersANegative(positives)
        monkeypatch.setattr("pipeline.teacher.judge.open_teacher", lambda *_: fake)

    return install


def pairs(version: Path) -> list[tuple[str, str]]:
    """(doc_id, normalized query) of the version's pairs."""
    data = pq.read_table(version / "data", columns=["doc_id", "query"]).to_pylist()
    return sorted((r["doc_id"], normalize(r["query"])) for r in data)


def state(version: Path) -> list[tuple[str, str]]:
    """(doc_id, normalized query) of the version's dedup state."""
    rows = pq.read_table(version / "state" / "queries.parquet").to_pylist()
    return sorted((r.get("doc_id", "?"), r["query_norm"]) for r in rows)


def test_a_dropped_pair_blocks_no_duplicate_and_the_state_is_what_was_published(
    job_file: Callable[..., Path], tmp_path: Path, teacher_drops: Callable[[set[str]], None]
) -> None:
    # Batches of 4: documents 0, 1 (same batch) and 5 (next batch) ask the same query; the
    # teacher drops the pairs of documents 0 and 2, whose query document 8 asks in a refresh.
    first, later = DOCS[:8], DOCS[8]
    ids = [d["id"] for d in DOCS]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", first)
    path = job_file(input={"path": str(corpus), "batch_size": 4},
                    teacher={"kind": "fused", "on_preferred_negative": "drop_pair"})  # fmt: skip
    teacher_drops({DOCS[0]["text"], DOCS[2]["text"]})
    queries = {ids[0]: SUGAR, ids[1]: SUGAR, ids[5]: SUGAR, ids[2]: MOUNTAIN, ids[8]: MOUNTAIN}
    one = run_job(load_config(path), scripted(DOCS, **queries), progress=False).version_dir

    rows = pairs(one)
    assert (ids[1], SUGAR) in rows  # its twin in the batch was dropped: it is the first
    assert {d for d, _ in rows} == set(ids[:8]) - {ids[0], ids[2], ids[5]}
    rejects = pq.read_table(one / "rejects").to_pylist()
    assert {r["doc_id"]: r["reason"] for r in rejects} == {
        ids[0]: "teacher_prefers_negative",
        ids[2]: "teacher_prefers_negative",
        ids[5]: "exact_duplicate",
    }
    assert next(r["detail"] for r in rejects if r["doc_id"] == ids[5]).endswith(ids[1])
    assert state(one) == rows  # exactly the published queries

    write_jsonl(corpus, [*first, later])
    two = run_job(load_config(path), scripted(DOCS, **queries), progress=False, refresh=True)
    assert pairs(two.version_dir) == [(ids[8], MOUNTAIN)]  # its v0001 twin was never kept
    assert state(two.version_dir) == [(ids[8], MOUNTAIN)]
