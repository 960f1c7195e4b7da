"""The cache-aware prompt layout: a family's later stages continue the first stage's
conversation, so the passage and the shared instructions are a prefix the engine caches."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import StageSampling, load_config
from pipeline.generate.backend import OnDone, Request, Result
from pipeline.prompts.library import PromptLibrary
from pipeline.run import run_job


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


def test_the_first_turn_holds_every_stage_and_whole_example_conversations() -> None:
    library = PromptLibrary()
    spec = library.task("retrieval")
    assert spec.converses and not library.task("retrieval_brainstorm").converses
    variables = {"passage": "PASSAGE TEXT {{ x }}", "passage_language": "English",
                 "personas": ["a", "b"]}  # fmt: skip
    messages = library.render_first_turn(spec, variables)
    system = messages[0]["content"]
    assert "select one option for each of three fields" in system  # the config stage
    assert "write the search query" in system  # the query stage, asked in a later turn
    roles = [m["role"] for m in messages[1:]]
    assert roles == ["user", "assistant"] * 4 + ["user"]  # 2 examples x 2 stages, request
    assert messages[3]["content"].startswith("Now write the query")  # example turn 2
    assert "Photosynthesis" not in messages[3]["content"]  # the turn repeats no passage
    assert messages[-1]["content"].startswith("**Passage** (in English):\nPASSAGE TEXT {{ x }}")


def test_a_later_stage_continues_the_conversation_and_hits_the_cache(
    generator: Any, job_file: Callable[..., Path]
) -> None:
    recording = Recording(generator)
    config = load_config(job_file(languages={"query": ["en"]}, prompt_layout="conversation"))
    summary = run_job(config, generator=recording, limit=8, progress=False)
    (first, first_results), (second, _) = recording.calls[:2]
    assert len(second) > 0
    by_prefix = {str(r.messages): res for r, res in zip(first, first_results, strict=True)}
    for request in second:
        result = by_prefix[str(request.messages[:-2])]
        assert request.messages[-2] == {"role": "assistant", "content": result.text}
        assert request.messages[-1]["content"].startswith("Now write the query")
        assert "**Passage**" not in request.messages[-1]["content"]
    query = summary.tokens.stages["query"]
    # All of a stage-2 prompt but its last turn was computed in stage 1: mostly cache hits.
    assert query["cached"] > 0.6 * query["prompt"]

    config.prompt_layout = "separate"
    config.output.shard_size = 3  # another job
    recording.calls.clear()
    run_job(config, generator=recording, limit=8, progress=False)
    second = recording.calls[1][0]
    assert all("**Passage**" in r.messages[-1]["content"] for r in second)
    assert all(len(r.messages) == 6 for r in second)  # system, two examples, request
