"""The one small interface every generation backend implements.

The two-stage Qwen3 recipe is two passes through `Generator.generate`, not a special engine.
A failed request is a `Result` with `error` set, never an exception that loses the batch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.config.generator import StageSampling
from pipeline.generation.backends.engine_settings import EngineSettings

# Called with the number of requests (or texts) that just finished, as they finish.
OnDone = Callable[[int], None]


@dataclass(frozen=True)
class Request:
    """One chat request with the JSON schema its answer must follow, or, with `labels`, a
    one-token answer scored over those labels (the LLM judge's yes/no): no schema then, and
    the result carries each label's log-probability."""

    messages: list[dict[str, str]]
    schema: dict[str, Any]
    labels: tuple[str, ...] = ()
    # Which answer of several to the same messages (a plan's `samples`): part of the
    # request's seed and cache key when above 0, so sample 0 is the one-sample request.
    sample: int = 0


@dataclass(frozen=True)
class Result:
    """What came back for one request."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    cached_tokens: int = 0  # prompt tokens served from the engine's prefix cache
    # For a request with labels: each label's log-probability as the first answer token
    # (a label the backend did not report is missing).
    label_logprobs: dict[str, float] | None = None


class Generator(Protocol):
    """Runs a batch of requests with one stage's sampling; results match requests by index."""

    model: str
    settings: EngineSettings | None

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        """Generate one result per request, in order, calling `on_done` as requests finish."""
        ...
