"""The `generator` and `sampling` sections of a job: the model, what runs it (the
in-process engine or an OpenAI-compatible server, named in the backend registry), and the
sampling of each stage."""

from typing import Any

from pydantic import Field, field_validator

from pipeline.config.base import Strict
from pipeline.generation.backends.registry import BACKENDS


class StageSampling(Strict):
    """Sampling for one generation stage."""

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(20, ge=-1)
    max_tokens: int = Field(128, gt=0)


# Sampling per stage name; a stage the job does not name samples with its task's defaults.
SamplingConfig = dict[str, StageSampling]


class ServerConfig(Strict):
    """An OpenAI-compatible server (`backend: openai`): where it is and how to talk to it."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the server's /v1 URL")
    served_model: str | None = Field(None, description="the model name the server serves")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (never the key itself)"
    )
    concurrency: int = Field(32, ge=1, le=1024, description="requests in flight at once")
    timeout: float = Field(300, gt=0, description="seconds per request")
    retries: int = Field(5, ge=0, le=20, description="retries on connection errors, 429, 5xx")
    backoff: float = Field(1.0, gt=0, description="first retry delay in seconds, doubled each time")
    launch: bool = Field(False, description="start a local vLLM server for the job, stop it after")
    port: int = Field(8000, ge=1, le=65535, description="port of a launched server")
    startup_timeout: float = Field(600, gt=0, description="seconds to wait for /health")


class GeneratorConfig(Strict):
    """The model and what runs it: the in-process vLLM engine, or an OpenAI-compatible
    server (started by the job when `server.launch` is on)."""

    backend: str = Field(
        "vllm", description="vllm (the in-process engine) or openai (a server); see BACKENDS"
    )
    model: str
    name: str | None = Field(
        None,
        description="the model's name in records, manifest and card (default: a model "
        "folder's hub id from its config.json, else the folder's name; never a local path)",
    )
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to vllm.LLM, or as --flags to a launched server",
    )
    server: ServerConfig = ServerConfig()
    max_failed_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of documents whose requests may fail (after retries) in a run "
        "that is still published; past it the run stops unfinished, to be resumed",
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r} (known: {', '.join(BACKENDS)})")
        return value
