"""The in-process vLLM engine backend: `LLM.chat` on whole batches, structured outputs.

Thinking is disabled through the chat template (Qwen3's `enable_thinking=False`); the
seed is global to the engine because per-request seeds crash vLLM's CPU sampler on large
batches. Engines are cached per process and settings, so a test session or a benchmark
that runs several jobs pays for one engine load.
"""

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.config import GeneratorConfig, StageSampling
from pipeline.errors import UserError
from pipeline.generate.backend import Request, Result

HF_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Without this, random-weight models pad structured JSON with whitespace until max_tokens.
STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}


def check_model(model: str) -> None:
    """Fail fast on a model that is neither a local folder nor a hub id we could fetch."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder has no config.json: {model}")
        return
    if path.is_absolute() or not HF_MODEL_ID.match(model):
        raise UserError(f"model path does not exist: {model}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise UserError(f"model {model} is not a local folder and HF_HUB_OFFLINE=1")


class VllmGenerator:
    """A vLLM engine in this process."""

    def __init__(self, model: str, seed: int, engine: dict[str, Any]) -> None:
        check_model(model)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM  # deferred: importing vllm takes seconds

        options = {"structured_outputs_config": STRUCTURED_OUTPUTS, **engine}
        try:
            self.llm = LLM(model=model, seed=seed, **options)
        except Exception as exc:  # vLLM raises many types; the user needs the message
            first = str(exc).strip().splitlines()
            raise UserError(
                f"vLLM could not load {model}: {first[0] if first else type(exc).__name__}"
            ) from exc
        self.model = model

    def generate(self, requests: list[Request], sampling: StageSampling) -> list[Result]:
        """Run all requests as one `LLM.chat` call so vLLM batches them."""
        if not requests:
            return []
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=sampling.top_k,
                max_tokens=sampling.max_tokens,
                structured_outputs=StructuredOutputsParams(json=request.schema),
            )
            for request in requests
        ]
        try:
            outputs = self._chat([r.messages for r in requests], params)
        except ValueError:
            # One bad request (e.g. a prompt over max_model_len) fails vLLM's whole batch;
            # retry one by one so only that request carries the error.
            return [
                self._one(request, param) for request, param in zip(requests, params, strict=True)
            ]
        return [_result(output) for output in outputs]

    def _chat(self, conversations: list[list[dict[str, str]]], params: list[Any]) -> list[Any]:
        return self.llm.chat(
            conversations,
            sampling_params=params,
            use_tqdm=False,
            chat_template_kwargs={"enable_thinking": False},
        )

    def _one(self, request: Request, param: Any) -> Result:
        try:
            return _result(self._chat([request.messages], [param])[0])
        except ValueError as exc:
            return Result("", None, 0, 0, error=str(exc).splitlines()[0][:500])


def _result(output: Any) -> Result:
    completion = output.outputs[0]
    return Result(
        text=completion.text,
        finish_reason=completion.finish_reason,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids),
    )


@lru_cache(maxsize=2)
def _cached(model: str, seed: int, engine_json: str) -> VllmGenerator:
    return VllmGenerator(model, seed, json.loads(engine_json))


def open_generator(config: GeneratorConfig, seed: int) -> VllmGenerator:
    """The engine for these settings, created once per process."""
    return _cached(config.model, seed, json.dumps(config.engine, sort_keys=True))
