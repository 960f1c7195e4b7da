"""Several answers per plan (a task's `samples`): drawn from one computed prompt, the first
that passes every check becomes the plan's pair, the others are spares; the bars and the
funnel still add up."""

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.dataset.records import Candidate, Document
from pipeline.generation.backends.base import Request
from pipeline.generation.backends.engine_settings import CPU_BLOCK_SIZE
from pipeline.generation.cache import result_key
from pipeline.quality.one_per_plan import one_per_plan
from pipeline.run.job import run_job
from tests.conftest import NO_QUALITY_FILTERS

SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "maxLength": 40}},
    "required": ["query"],
}


def test_samples_of_one_prompt_reuse_its_computed_tokens_and_differ(generator: Any) -> None:
    text = "Samples share a prompt. " + " ".join(f"gauge{i} reading" for i in range(120))
    messages = [{"role": "user", "content": text}]
    requests = [Request(messages, SCHEMA, sample=s) for s in range(3)]
    results = generator.generate(requests, StageSampling(temperature=1.0, max_tokens=24))
    assert all(r.error is None for r in results)
    assert len({r.prompt_tokens for r in results}) == 1 and results[0].prompt_tokens > 300
    # One sample computes the prompt; the others compute only its last, partial block again.
    # Which one is vLLM's to choose: a request waits for its JSON grammar, and the three
    # grammars may compile in any order (CI once scheduled sample 1 or 2 first).
    computed = sorted(r.prompt_tokens - r.cached_tokens for r in results)
    assert computed[-1] > CPU_BLOCK_SIZE and computed[1] <= CPU_BLOCK_SIZE
    assert len({r.text for r in results}) > 1  # each sample its own seed
    seeds = {generator.request_seed(r) for r in requests}
    assert len(seeds) == 3


def test_each_sample_has_its_own_cache_key() -> None:
    request = Request([{"role": "user", "content": "q"}], SCHEMA)
    sampling = StageSampling()
    keys = [result_key(replace(request, sample=s), sampling, "m", 1) for s in range(3)]
    assert len(set(keys)) == 3
    assert keys[0] == result_key(request, sampling, "m", 1)  # sample 0 is the plain request


def candidate(doc: Document, plan: int, sample: int) -> Candidate:
    return Candidate(doc, "retrieval", "en", 5, [], query=f"q{plan}{sample}", plan=plan,
                     samples=3, sample=sample)  # fmt: skip


def test_the_first_surviving_sample_of_each_plan_is_kept() -> None:
    a, b = Document("a", "text a"), Document("b", "text b")
    # Survivors of the filters: plan a/0 lost its sample 0, plan a/1 and b/0 did not.
    survivors = [candidate(a, 0, 1), candidate(a, 0, 2), candidate(a, 1, 0),
                 candidate(a, 1, 1), candidate(b, 0, 0), candidate(b, 0, 2)]  # fmt: skip
    verdicts = one_per_plan(survivors)
    kept = [c.query for c, v in zip(survivors, verdicts, strict=True) if v is None]
    assert kept == ["q01", "q10", "q00"]
    spares = [v for v in verdicts if v is not None]
    assert [(r.doc_id, r.reason) for r in spares] == [("a", "spare_sample")] * 2 + [
        ("b", "spare_sample")
    ]
    assert spares[0].detail == "sample 1 of this plan passed first" and spares[0].raw == "q02"


def test_a_job_with_samples_keeps_one_pair_per_plan(
    generator: Any, job_file: Callable[..., Path]
) -> None:
    # The minimal filter rejects the tiny model's longer gibberish: some plans lose a sample.
    tasks = [{"type": "retrieval", "samples": 3, "query_words": [2, 6]}]
    filters = {**NO_QUALITY_FILTERS, "max_query_words": 18}
    config = load_config(job_file(tasks=tasks, filters=filters))
    events: list[tuple[str, int]] = []
    summary = run_job(
        config, generator=generator, limit=12, progress=False, listener=lambda *e: events.append(e)
    )
    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    funnel = {step["step"]: step for step in manifest["funnel"]}
    assert funnel["config"]["in"] == 12
    assert funnel["query"]["in"] <= 12 < funnel["query"]["out"] <= 3 * funnel["query"]["in"]
    assert manifest["tokens"]["stages"]["query"]["requests"] == 3 * funnel["query"]["in"]
    steps = list(funnel)
    assert steps.index("one_per_plan") == steps.index("negatives") - 1  # after every filter
    for step in funnel.values():  # the query step answers each plan 3 times
        answers = 3 if step["step"] == "query" else 1
        assert answers * step["in"] == step["out"] + sum(step["rejected"].values()), step

    rows = pq.read_table(summary.version_dir / "data").to_pylist()
    assert rows and len({r["doc_id"] for r in rows}) == len(rows) == summary.kept
    rejects = pq.read_table(summary.version_dir / "rejects").to_pylist()
    spares = [r for r in rejects if r["reason"] == "spare_sample"]
    assert spares and {r["doc_id"] for r in spares} <= {r["doc_id"] for r in rows}
    # Plans that kept a pair also lost samples to the filter (which sample survived is not
    # in the output: test_the_first_surviving_sample_of_each_plan_is_kept covers that).
    too_long = {r["doc_id"] for r in rejects if r["reason"] == "query_too_long"}
    assert too_long & {r["doc_id"] for r in rows}
    done: dict[str, int] = {}
    for step, n in events:
        done[step] = done.get(step, 0) + n
    assert set(done.values()) == {12}, done  # the bars count plans, not samples
