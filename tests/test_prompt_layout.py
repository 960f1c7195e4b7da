"""The cache-aware prompt layout: every stage of a multi-stage family opens its request with
one head (all stages' instructions and examples) and the passage, so a later stage computes
only its own tail and finds the rest in the engine's prefix cache."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from transformers import AutoTokenizer

from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.generation.backends.base import OnDone, Request, Result
from pipeline.prompts.library import PromptLibrary
from pipeline.run.job import run_job

VARIABLES = {"passage": "PASSAGE TEXT {{ x }}", "passage_language": "English",
             "personas": ["a", "b"], "character": "a", "question_type": "keywords",
             "difficulty": "phd", "query_words": 4, "clarity": "clear",
             "query_language": "German"}  # fmt: skip


class Recording:
    """The real engine, with a copy of every request it is sent (to look at the layout)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model, self.settings = inner, inner.model, inner.settings
        self.calls: list[tuple[list[Request], list[Result]]] = []

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        results = self.inner.generate(requests, sampling, on_done)
        self.calls.append((requests, results))
        return results


def test_every_stage_opens_with_the_same_head_and_passage() -> None:
    library = PromptLibrary()
    spec = library.task("retrieval")
    assert spec.shares_lead and not library.task("sts").shares_lead  # one stage: nothing shared
    config, query = (library.render_shared(spec, stage, VARIABLES) for stage in spec.stages)
    assert config[:-1] == query[:-1]  # system and examples: one head for both stages
    system = config[0]["content"]
    assert "select one option for each of three fields" in system  # the config stage
    assert "write the search query" in system  # the query stage
    roles = [m["role"] for m in config[1:]]
    assert roles == ["user", "assistant"] * 4 + ["user"]  # 2 examples x 2 stages, request
    assert [m["content"].split("**Task**: ")[1].split("\n")[0] for m in config[1:-1:2]] == [
        "config", "query", "config", "query"
    ]  # fmt: skip
    lead = "**Passage** (in English):\nPASSAGE TEXT {{ x }}\n**Task**: "
    assert config[-1]["content"].startswith(lead + "config\n**Characters**: a; b")
    assert query[-1]["content"].startswith(lead + "query\n**Character**: a")
    assert query[-1]["content"].count("PASSAGE TEXT") == 1  # the tail repeats no passage
    assert "- Language: German" in query[-1]["content"]

    brainstorm = library.task("retrieval_brainstorm")  # three stages, 1, 2 and 2 examples
    heads = [library.render_shared(brainstorm, s, VARIABLES)[:-1] for s in brainstorm.stages]
    assert heads[0] == heads[1] == heads[2] and len(heads[0]) == 1 + 2 * 5


def test_a_later_stage_computes_only_its_tail(
    generator: Any, job_file: Callable[..., Path], tiny_model: Path
) -> None:
    recording = Recording(generator)
    config = load_config(job_file(languages={"query": ["en"]}, prompt_layout="shared"))
    summary = run_job(config, generator=recording, limit=8, progress=False)
    (first, _), (second, second_results) = recording.calls[:2]
    assert len(second) > 0
    stage_one = {r.messages[-1]["content"].split("**Task**")[0] for r in first}
    for request in second:
        assert request.messages[:-1] == first[0].messages[:-1]  # the one head
        lead, tail = request.messages[-1]["content"].split("**Task**: ")
        assert lead in stage_one and tail.startswith("query\n**Character**: ")
    query = summary.tokens.stages["query"]
    # All of a stage-2 prompt but its tail was computed in stage 1: mostly cache hits, and
    # what the engine computed is the tails (what follows the prompt stage 1 shares), to
    # within one 32-token block each.
    assert query["cached"] > 0.8 * query["prompt"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def ids(messages: list[dict[str, str]]) -> list[int]:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, enable_thinking=False, tokenize=False
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    stage_one_ids = {r.messages[-1]["content"].split("**Task**")[0]: ids(r.messages) for r in first}
    tails = 0
    for request in second:
        mine = ids(request.messages)
        earlier = stage_one_ids[request.messages[-1]["content"].split("**Task**")[0]]
        common = next(
            (i for i, (a, b) in enumerate(zip(mine, earlier, strict=False)) if a != b), len(mine)
        )
        tails += len(mine) - common
    assert query["prompt"] - query["cached"] <= tails + 32 * len(second)
    # Each kept pair's query is the answer to its own document's request (stage 2 is sent
    # last-computed-first and put back in corpus order).
    answers = {
        r.messages[-1]["content"].split("\n**Task**")[0]: json.loads(res.text, strict=False)[
            "query"
        ].strip()
        for r, res in zip(second, second_results, strict=True)
        if res.finish_reason == "stop"
    }
    pairs = pq.read_table(summary.version_dir / "data").to_pylist()
    assert pairs and all(
        answers[f"**Passage** (in English):\n{p['positive']}"] == p["query"] for p in pairs
    )
