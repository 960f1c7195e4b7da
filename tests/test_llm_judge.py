"""The LLM judge: yes/no log-probabilities from the job's own engine, as a teacher and as
the check of every family."""

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.config.job import load_config
from pipeline.generation.backends.base import Result
from pipeline.generation.cache import CachingGenerator, RequestCache, result_key
from pipeline.run.job import run_job
from pipeline.teacher.llm_judge import SAMPLING, SYSTEM, judge, judge_request, yes_probability
from tests.conftest import NO_QUALITY_FILTERS

TRIPLES = [
    ("Given a question, retrieve passages that answer it", "capital of France",
     "Paris is the capital and largest city of France."),
    ("Classify the sentiment of a review", "The charger broke after a week.", "negative"),
    ("Retrieve parallel sentences", "Der Buchdrucker und das Fichtensterben",
     "Bachdrucker 2018 bf"),
]  # fmt: skip


def test_yes_probability_is_renormalized_over_the_two_labels() -> None:
    both = Result("yes", "length", 9, 1, label_logprobs={"yes": math.log(0.6), "no": math.log(0.2)})
    assert yes_probability(both) == pytest.approx(0.75)
    assert yes_probability(Result("", None, 9, 1, label_logprobs={"yes": -1.0})) is None
    failed = Result("", None, 0, 0, error="HTTP 500", label_logprobs={"yes": -1.0, "no": -2.0})
    assert yes_probability(failed) is None


def test_the_request_carries_texts_as_content_in_the_reranker_form() -> None:
    request = judge_request("Find {{ x }}", "q {% if %}", "doc {{ 7 * 7 }}")
    assert request.messages[0] == {"role": "system", "content": SYSTEM}
    assert request.messages[1]["content"] == (
        "<Instruct>: Find {{ x }}\n<Query>: q {% if %}\n<Document>: doc {{ 7 * 7 }}"
    )
    assert request.labels == ("yes", "no") and SAMPLING.max_tokens == 1


def model_logprobs(model: Path, messages: list[dict[str, str]]) -> dict[str, float]:
    """yes/no log-probabilities of the first answer token, computed here with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        logits = lm(input_ids=ids).logits[0, -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return {w: float(logprobs[tokenizer.encode(w, add_special_tokens=False)[0]])
            for w in ("yes", "no")}  # fmt: skip


def test_the_engine_scores_equal_the_model_own_and_come_back_from_the_cache(
    generator: Any, tiny_model: Path, tmp_path: Path
) -> None:
    caching = CachingGenerator(RequestCache(tmp_path / "cache"), generator.model, 7, generator)
    scores = judge(caching, TRIPLES)
    assert caching.generated == 3
    for triple, score in zip(TRIPLES, scores, strict=True):
        request = judge_request(*triple)
        expected = model_logprobs(tiny_model, request.messages)
        [result] = caching.cache.read([result_key(request, SAMPLING, generator.model, 7)])
        assert result.label_logprobs == pytest.approx(expected, abs=0.05)
        assert score == pytest.approx(
            1 / (1 + math.exp(expected["no"] - expected["yes"])), abs=0.02
        )
    again = CachingGenerator(RequestCache(tmp_path / "cache"), generator.model, 7, inner=None)
    assert judge(again, TRIPLES) == scores and again.generated == 0


def test_a_job_judged_by_its_own_engine(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    filters: dict[str, Any] = {
        **NO_QUALITY_FILTERS, "llm_judge": {"enabled": True, "min_score": 0}
    }  # fmt: skip
    tasks = [{"type": "retrieval"}, {"type": "classification"}]
    teacher = {"kind": "llm", "on_preferred_negative": "keep"}
    english = {"query": ["en"]}
    config = load_config(job_file(teacher=teacher, filters=filters, tasks=tasks, languages=english))
    summary = run_job(config, generator=generator, limit=8, progress=False)
    rows = pq.read_table(summary.version_dir / "data").to_pylist()
    assert {row["task"] for row in rows} == {"retrieval", "classification"}
    for row in rows:  # every family judged; the mining family scored by the teacher
        direct = judge(generator, [(row["instruction"], row["query"], row["positive"])])[0]
        assert row["score_llm_judge"] == pytest.approx(direct, abs=1e-4)
        if row["task"] == "retrieval":
            assert len(row["teacher_scores"]) == 1 + len(row["negatives"])
            assert row["teacher_scores"][0] == pytest.approx(direct, abs=1e-4)
            assert all(0 < s < 1 for s in row["teacher_scores"])
    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    steps = [step["step"] for step in manifest["funnel"]]
    assert "llm_judge" in steps and "teacher" in steps

    filters["llm_judge"]["min_score"] = 1.0  # P(yes) < 1 always: the judge rejects all
    output = {"dir": str(tmp_path / "strict")}
    strict = load_config(job_file(filters=filters, tasks=tasks, languages=english, output=output))
    summary = run_job(strict, generator=generator, limit=8, progress=False)
    rejects = pq.read_table(summary.version_dir / "rejects").to_pylist()
    judged = [r for r in rejects if r["stage"] == "llm_judge"]
    assert summary.kept == 0 and judged
    assert {r["reason"] for r in judged} == {"judge_says_no"}
    assert all(r["score"] < 1.0 for r in judged)
