"""`embsynth config`: the configuration reference and a starter job config.

`schema` prints what the pydantic models accept (JSON schema, or the Markdown of
docs/config.md, which a test keeps equal to it), so the reference cannot drift from the
code. `init` writes a commented job config for the user's corpus with its columns detected,
so a first job starts from keys that load rather than from a copied example.

The commands are plain functions: pipeline.cli.app registers them with its error handling
(this module must not import app, which imports it).
"""

import json
import re
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from pipeline.config.errors import UserError

DOCS = "docs/config.md"
MODEL_PLACEHOLDER = "./REPLACE-WITH-YOUR-MODEL"
# Column names a corpus commonly uses for each role, likeliest first (BEIR: _id, title, text).
TEXT_NAMES = ("text", "body", "content", "contents", "passage", "document", "abstract")
ID_NAMES = ("id", "_id", "doc_id", "docid", "document_id", "pid", "uid")
TITLE_NAMES = ("title", "headline", "heading")
LANGUAGE_NAMES = ("language", "lang")


def reference_markdown() -> str:
    """docs/config.md: the job config, then the training config."""
    from pipeline.config.job import JobConfig
    from pipeline.config.reference import reference
    from pipeline.embedding.train_config import TrainConfig

    parts = [
        ("Job config (`embsynth run`)", JobConfig),
        ("Training config (`embsynth train`)", TrainConfig),
    ]
    return reference(parts)


def schema(
    markdown: Annotated[
        bool, typer.Option(help=f"the Markdown reference ({DOCS}) instead of the JSON schema")
    ] = False,
    train: Annotated[
        bool, typer.Option(help="the training config's JSON schema instead of the job config's")
    ] = False,
) -> None:
    """Print the job config's JSON schema, or the Markdown reference of every key.

    The reference is docs/config.md, which a test keeps equal to this output; regenerate it
    with: embsynth config schema --markdown > docs/config.md
    """
    if markdown:
        typer.echo(reference_markdown(), nl=False)
        return
    from pipeline.config.job import JobConfig
    from pipeline.embedding.train_config import TrainConfig

    model = TrainConfig if train else JobConfig
    typer.echo(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False))


def init(
    family: Annotated[str, typer.Option(help="the task family of the one task")] = "retrieval",
    corpus: Annotated[
        Path | None, typer.Option(help="your corpus (JSONL, Parquet or a folder of .txt/.md)")
    ] = None,
    out: Annotated[Path, typer.Option(help="the job config to write")] = Path("job.yaml"),
    force: Annotated[bool, typer.Option(help="overwrite OUT if it exists")] = False,
) -> None:
    """Write a commented starter job config for your corpus.

    Its columns are read off the corpus's first row; one task of FAMILY; the generator with
    a model to fill in; each section names its part of docs/config.md. Refuses to replace
    an existing OUT without --force.
    """
    from pipeline.prompts.library import PromptLibrary

    library = PromptLibrary(personas=[])  # the families only: no persona file to read
    families = library.available()
    if family not in families:
        raise UserError(f"unknown family {family!r}; known: {', '.join(families)}")
    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise UserError(f"folder not found: {out.parent}")
    columns = detect_columns(corpus) if corpus is not None else dict(DEFAULT_COLUMNS)
    cross_lingual = library.task(family).cross_lingual
    text = starter(family, families, corpus, out, columns, cross_lingual)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}; set generator.model, then: embsynth run {out}")


DEFAULT_COLUMNS: dict[str, str | None] = {
    "id_column": "id",
    "text_column": "text",
    "title_column": "title",
    "language_column": "language",
}


def detect_columns(corpus: Path) -> dict[str, str | None]:
    """The input section's columns, read off the corpus's first row: a name the user would
    otherwise have to look up, and one the survey would refuse if it were wrong."""
    from pipeline.config.input import InputConfig
    from pipeline.corpus.reader import detect_format

    fmt = detect_format(InputConfig(path=corpus))
    if fmt == "text":  # a folder of files: the reader names the columns itself
        return dict(DEFAULT_COLUMNS)
    row = _first_row(corpus, fmt)
    found = {
        "id_column": _pick(row, ID_NAMES),
        "title_column": _pick(row, TITLE_NAMES),
        "language_column": _pick(row, LANGUAGE_NAMES),
    }
    # A text column by its name, else the longest string of the row that plays no other role.
    strings = [k for k, v in row.items() if isinstance(v, str) and k not in found.values()]
    longest = max(strings, key=lambda name: len(row[name]), default=None)
    text = _pick(row, TEXT_NAMES) or longest or "text"
    return {"id_column": found["id_column"], "text_column": text, **found}


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in row), None)


def _first_row(corpus: Path, fmt: str) -> dict[str, Any]:
    """The first row of a JSONL or Parquet corpus (columns of an empty file, as nulls)."""
    if fmt == "jsonl":
        from pipeline.corpus.reader import jsonl_rows

        return next((row for _, row in jsonl_rows(corpus)), {})
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(corpus)
        first = next(parquet.iter_batches(batch_size=1), None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{corpus}: not a readable Parquet file ({exc})") from exc
    if first is None or first.num_rows == 0:
        return dict.fromkeys(parquet.schema_arrow.names)
    return first.to_pylist()[0]


def _yaml(value: Any) -> str:
    """`value` as a YAML scalar: bare when it reads back as itself, else quoted."""
    if value is None:
        return "null"
    plain = str(value)
    try:
        if re.fullmatch(r"[\w./~-]+", plain) and yaml.safe_load(plain) == value:
            return plain
    except yaml.YAMLError:
        pass
    return json.dumps(value, ensure_ascii=False)


def _corpus_path(corpus: Path | None, out: Path) -> str:
    """The corpus as the config names it: relative to the config's folder when it lies
    inside it (the two move together), else absolute (the config may move alone)."""
    if corpus is None:
        return "corpus.jsonl"
    corpus, folder = corpus.resolve(), out.resolve().parent
    return str(corpus.relative_to(folder)) if corpus.is_relative_to(folder) else str(corpus)


def _name(corpus: Path | None) -> str:
    """The dataset's name (its folder under output.dir): the corpus's stem, made legal."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", corpus.stem if corpus else "").strip("-.")
    return stem or "my-dataset"


ABSENT = {
    "id_column": "none in the corpus: ids are content hashes",
    "title_column": "none in the corpus",
    "language_column": "none in the corpus: detected per document",
}


def starter(
    family: str,
    families: list[str],
    corpus: Path | None,
    out: Path,
    columns: dict[str, str | None],
    cross_lingual: bool,
) -> str:
    """The starter job config's text: a few keys per section with their defaults, each
    section's comment naming its part of the reference."""
    head = [
        *_comment(
            "A starter job config, written by `embsynth config init`. Every key, its type "
            f"and its default: {DOCS} (or `embsynth config schema --markdown`). A key left "
            "out takes its default, an unknown key is an error, and relative paths are read "
            f"next to this file. Run it with: embsynth run {out.name}"
        ),
        f"name: {_yaml(_name(corpus))}  # the dataset's folder under output.dir",
        "seed: 0",
    ]
    sections = [
        head,
        _input_lines(corpus, out, columns),
        _task_lines(family, families, cross_lingual),
        _generator_lines(),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _comment(text: str) -> list[str]:
    """`text` as YAML comment lines that fit a terminal."""
    return textwrap.wrap(text, width=90, initial_indent="# ", subsequent_indent="# ")


def _input_lines(corpus: Path | None, out: Path, columns: dict[str, str | None]) -> list[str]:
    """The `input` section: the corpus and its columns (noting the ones it lacks)."""
    from pipeline.config.input import InputConfig

    read = "" if corpus is None else f", read off {corpus.name}"
    lines = [
        *_comment(f"The corpus and which of its columns hold what{read} ({DOCS}#input)."),
        "input:",
        f"  path: {_yaml(_corpus_path(corpus, out))}  # JSONL, Parquet or a folder of .txt/.md",
    ]
    for key, value in columns.items():
        lines.append(f"  {key}: {_yaml(value)}" + ("" if value else f"  # {ABSENT[key]}"))
    chars = InputConfig.model_fields["max_chars"].default
    return [*lines, f"  max_chars: {chars}  # longer documents are skipped"]


def _task_lines(family: str, families: list[str], cross_lingual: bool) -> list[str]:
    """The `tasks` and `languages` sections: one task of the family, and its languages."""
    from pipeline.config.job import TaskConfig

    low, high = TaskConfig.model_fields["query_words"].default
    languages = "[en, de, fr]  # cross-lingual: two or more" if cross_lingual else "[en]"
    return [
        *_comment(
            f"The task families to generate, each with its share of the documents "
            f"({DOCS}#tasks). The bundled families: {', '.join(families)}."
        ),
        "tasks:",
        f"  - type: {family}",
        "    weight: 1",
        f"    query_words: [{low}, {high}]",
        "    queries_per_document: 1",
        "",
        f"# The languages queries are written in: a list or code -> weight ({DOCS}#languages).",
        "languages:",
        f"  query: {languages}",
    ]


def _generator_lines() -> list[str]:
    """The `generator`, `filters` and `output` sections: the model to fill in."""
    from pipeline.quality.registry import filters_model

    max_words = filters_model().model_fields["max_query_words"].default
    return [
        f"# The LLM that writes the queries, and what runs it ({DOCS}#generator).",
        "generator:",
        "  backend: vllm  # or openai: an OpenAI-compatible server (generator.server)",
        "  # Replace with a model folder (relative to this file) or a Hugging Face id, such as",
        "  # Qwen/Qwen3-8B on a GPU (`embsynth models prepare-demo DIR` makes a small CPU one).",
        f"  model: {MODEL_PLACEHOLDER}",
        "  engine:  # passed to vllm.LLM",
        "    max_model_len: 4096",
        "",
        f"# The quality checks after generation, each with its defaults ({DOCS}#filters).",
        "filters:",
        f"  max_query_words: {max_words}  # at least the longest query_words",
        "",
        f"# Where the dataset's versions go: DIR/NAME/vNNNN ({DOCS}#output).",
        "output:",
        "  dir: out",
    ]
