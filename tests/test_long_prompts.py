"""A prompt with no room left in `max_model_len` (2048 in the test ENGINE) is rejected on its
own as `prompt_too_long`, a permanent failure, while the rest of its batch is generated in
one engine call, as a batch without it would be. The engine is the session's real vLLM
engine; its enqueue methods are wrapped only to count the calls."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import pipeline.generation.parse as parse
from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.generation.backends.base import Request
from pipeline.generation.parse import ParseFailure, parse_result
from pipeline.run.job import run_job
from tests.conftest import ENGINE, SAMPLE_CORPUS, write_jsonl

SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 30}},
    "required": ["query"],
    "additionalProperties": False,
}
GREEDY = StageSampling(temperature=0, max_tokens=12)
PROMPT_TOO_LONG = "prompt_too_long"  # the reject reason, and the code its error starts with


def digits_request(count: int) -> Request:
    """A prompt of `count` digits: the Qwen tokenizer makes each digit one token, so the
    prompt's length can be set to the token."""
    return Request([{"role": "user", "content": "7" * count}], SCHEMA)


def count_engine_calls(generator: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches handed to the real engine from now on (as conversations or
    as token ids)."""
    calls: list[int] = []
    for name in ("enqueue_chat", "enqueue"):
        method = getattr(generator.llm, name)

        def counted(prompts: list[Any], *args: Any, method: Any = method, **kwargs: Any) -> Any:
            calls.append(len(prompts))
            return method(prompts, *args, **kwargs)

        monkeypatch.setattr(generator.llm, name, counted)
    return calls


def test_one_prompt_too_long_is_rejected_alone_and_the_batch_stays_whole(
    generator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = ENGINE["max_model_len"]
    # vLLM's own count of the chat template around a digits prompt (one token per digit).
    probes = generator.generate([digits_request(10), digits_request(50)], GREEDY)
    assert probes[1].prompt_tokens - probes[0].prompt_tokens == 40
    template = probes[0].prompt_tokens - 10
    normal = [
        Request([{"role": "user", "content": f"Write a search query about river {i}."}], SCHEMA)
        for i in range(4)
    ]
    at_limit = digits_request(limit - template)  # no room for one answer token
    just_fits = digits_request(limit - 1 - template)  # room for exactly one
    requests = [normal[0], normal[1], at_limit, normal[2], just_fits, normal[3]]
    calls = count_engine_calls(generator, monkeypatch)
    finished: list[int] = []

    results = generator.generate(requests, GREEDY, finished.append)

    assert calls == [5]  # everything that fits, in one engine call; no one-by-one retries
    assert sum(finished) == len(requests)
    long = results[2]
    assert long.error is not None and long.error.startswith(f"{PROMPT_TOO_LONG}: ")
    assert long.prompt_tokens == limit and parse.permanent_error(long) == PROMPT_TOO_LONG
    with pytest.raises(ParseFailure) as failure:
        parse_result(long, SCHEMA)
    assert failure.value.reason == PROMPT_TOO_LONG
    others = [r for i, r in enumerate(results) if i != 2]
    assert all(r.error is None and parse.permanent_error(r) is None for r in others)
    assert results[4].prompt_tokens == limit - 1 and results[4].completion_tokens == 1
    # The ids the check counts (and hands to vLLM) are those of vLLM's own chat rendering.
    from vllm import SamplingParams

    chats = generator.llm.chat(
        [r.messages for r in normal],
        SamplingParams(max_tokens=1),
        use_tqdm=False,
        chat_template_kwargs={"enable_thinking": False},
    )
    assert [c.prompt_token_ids for c in chats] == generator.prompt_ids(normal)


def test_a_document_too_long_for_the_model_is_a_counted_reject(
    generator: Any,
    job_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under input.max_chars (8,000), but about 6,000 tokens: a table of figures.
    table = "Table 3. " + " ".join(f"{n * 37 % 9973:04d}" for n in range(1500))
    docs = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()[:5]]
    docs = [{**d, "text": d["text"] + " (long prompts test)"} for d in docs]  # not cached
    docs.insert(2, {"id": "figures", "text": table, "language": "en"})
    corpus = write_jsonl(tmp_path / "corpus.jsonl", docs)
    config = load_config(job_file(input={"path": str(corpus)}))
    calls = count_engine_calls(generator, monkeypatch)
    batches: list[int] = []
    generate = generator.generate

    def counted(requests: list[Request], *args: Any, **kwargs: Any) -> Any:
        batches.append(len(requests))
        return generate(requests, *args, **kwargs)

    monkeypatch.setattr(generator, "generate", counted)
    summary = run_job(config, generator=generator, progress=False)

    assert len(table) < 8000 and len(calls) == len(batches) >= 2  # one engine call a batch
    assert calls[0] == batches[0] - 1  # the first stage's batch less the long document
    rejects = pq.read_table(summary.version_dir / "rejects").to_pylist()
    too_long = [r for r in rejects if r["reason"] == PROMPT_TOO_LONG]
    assert [(r["doc_id"], r["stage"]) for r in too_long] == [("figures", "config")]
    assert not any(r["reason"] == "generation_error" for r in rejects)
    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    assert manifest["counts"]["rejected"]["config"][PROMPT_TOO_LONG] == 1
    assert "figures" not in {row["doc_id"] for row in pq.read_table(
        summary.version_dir / "data", columns=["doc_id"]).to_pylist()}  # fmt: skip
