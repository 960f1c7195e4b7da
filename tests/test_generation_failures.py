"""Requests that fail after the backend's retries (a server that hiccups overnight) never
lose their documents: a published version leaves them uncovered, so the next `run` or
`refresh` generates them; past `generator.max_failed_share` the run stops unfinished and a
rerun resumes it whole (every document covered, no answer asked twice).

The failures are injected by a wrapper around the session's real vLLM engine that answers
chosen documents' requests with the error `Result` the server backend returns after its
last retry: a server that fails some requests and not others on cue cannot be had
otherwise (the wrapper is the fault, the run under test is real)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config.errors import GenerationFailed, NothingToDo
from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.generation.backends.base import Generator, Request, Result
from pipeline.run.job import run_job
from tests.conftest import ENGINE, SAMPLE_CORPUS

LIMIT = 12


class FailingFor:
    """The real engine, except that requests about the given documents fail."""

    def __init__(self, inner: Generator, texts: list[str]) -> None:
        self.inner, self.texts = inner, texts
        self.model, self.settings = inner.model, inner.settings

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: Any = None
    ) -> list[Result]:
        def fails(request: Request) -> bool:
            return any(t in m["content"] for m in request.messages for t in self.texts)

        passed = [r for r in requests if not fails(r)]
        answers = iter(self.inner.generate(passed, sampling, on_done))
        error = Result("", None, 0, 0, error="503 Service Unavailable after 2 retries")
        return [error if fails(r) else next(answers) for r in requests]


def corpus(n: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()[:n]]


def covered_ids(version: Path) -> set[str]:
    return set(pq.read_table(version / "state" / "documents.parquet")["doc_id"].to_pylist())


def pairs(version: Path) -> list[dict[str, Any]]:
    return pq.read_table(version / "data").to_pylist()


def test_failed_documents_stay_uncovered_and_the_next_run_generates_them(
    generator: Any, job_file: Callable[..., Path], tiny_model: Path
) -> None:
    path = job_file(generator={"model": str(tiny_model), "engine": ENGINE, "max_failed_share": 0.1})
    config = load_config(path)
    documents = corpus(LIMIT)
    failing = documents[3]
    first = run_job(config, FailingFor(generator, [failing["text"]]), limit=LIMIT, progress=False)
    manifest = json.loads((first.version_dir / "manifest.json").read_text())
    assert manifest["counts"]["failed_documents"] == 1
    assert any(reasons.get("generation_error") for reasons in first.rejected.values())
    assert covered_ids(first.version_dir) == {d["id"] for d in documents} - {failing["id"]}
    # The next run of the same job is not "already complete": it generates what failed.
    second = run_job(config, generator, limit=LIMIT, progress=False)
    assert second.documents == 1 and covered_ids(second.version_dir) == {failing["id"]}
    assert {row["doc_id"] for row in pairs(second.version_dir)} == {failing["id"]}
    with pytest.raises(NothingToDo):
        run_job(config, generator, limit=LIMIT, progress=False)


def test_past_the_share_the_run_stops_unfinished_and_resumes_whole(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    whole = run_job(load_config(job_file(name="whole")), generator, limit=LIMIT, progress=False)
    # A checkpoint after every batch: they must not keep the failed documents as done.
    path = job_file(
        output={"dir": str(tmp_path / "out"), "shard_size": 10, "checkpoint_minutes": 0}
    )
    with pytest.raises(GenerationFailed, match=r"requests failed for 3 of 12 documents"):
        failing = FailingFor(generator, [d["text"] for d in corpus(3)])
        run_job(load_config(path), failing, limit=LIMIT, progress=False)
    root = tmp_path / "out" / "t"
    # Nothing looks complete (state/ holds the corpus vectors, kept for the resumed run).
    assert [p.name for p in root.iterdir() if p.name != "state"] == [".v0001.partial"]
    resumed = run_job(load_config(path), generator, limit=LIMIT, progress=False)
    assert resumed.requests_generated > 0 and resumed.requests_cached > 0
    # Whole: every document covered, the failed documents' requests generated and every
    # other answer taken from the failed run's cache. The texts are not compared with the
    # uninterrupted run's: vLLM's CPU kernels are not batch-invariant (on AVX-512/AMX a
    # batch of nine samples other tokens than the same prompts in a batch of twelve, from
    # the tiny model's flat logits).
    assert covered_ids(resumed.version_dir) == covered_ids(whole.version_dir)
    assert resumed.requests_generated + resumed.requests_cached == whole.requests_generated
