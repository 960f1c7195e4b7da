"""The configuration reference and the starter config: docs/config.md is what `embsynth
config schema --markdown` prints now (so it cannot drift from the models), every key is in
it with a readable type and default, and `embsynth config init` writes a job config that
loads, with the corpus's columns read off it. Fast: no model is loaded."""

import json
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from pydantic import Field

from pipeline.cli.config_commands import MODEL_PLACEHOLDER
from pipeline.config.base import Strict
from pipeline.config.job import JobConfig, load_config
from pipeline.config.reference import nested, rows, type_name
from pipeline.corpus.reader import check_layout
from pipeline.embedding.train_config import TrainConfig
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.registry import Filter, per_candidate, registered
from tests.conftest import cli, write_jsonl

DOCS = Path(__file__).resolve().parent.parent / "docs" / "config.md"
REGENERATE = "embsynth config schema --markdown > docs/config.md"


def test_docs_are_what_the_command_prints_now() -> None:
    result = cli("config", "schema", "--markdown")
    assert result.exit_code == 0, result.stderr
    assert DOCS.is_file(), f"docs/config.md is missing; write it with: {REGENERATE}"
    assert DOCS.read_text(encoding="utf-8") == result.stdout, (
        f"docs/config.md is out of date with the config models; regenerate it with: {REGENERATE}"
    )


def _leaf_keys(model: type[Strict], prefix: str = "") -> list[str]:
    """Every dotted key, walked independently of the renderer's own walk."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        for suffix, section in nested(field.annotation):
            keys += _leaf_keys(section, f"{prefix}{name}{suffix}.")
    return keys


@pytest.mark.parametrize("model", [JobConfig, TrainConfig])
def test_every_key_has_one_row_in_declaration_order(model: type[Strict]) -> None:
    markdown = cli("config", "schema", "--markdown").stdout
    keys = [row.key for row in rows(model)]
    assert len(keys) == len(set(keys))
    assert [key for key in keys if key in model.model_fields] == list(model.model_fields)
    for key in _leaf_keys(model):
        assert f"| `{key}` |" in markdown, key


def _row(key: str) -> list[str]:
    markdown = cli("config", "schema", "--markdown").stdout
    line = next(line for line in markdown.splitlines() if line.startswith(f"| `{key}` |"))
    return [cell.strip() for cell in line.replace("\\|", "¦").strip("|").split("|")]


def test_rows_show_type_default_constraints_and_description() -> None:
    assert _row("filters.language.min_confidence") == [
        "`filters.language.min_confidence`",
        "`float`",
        "`0.5`",
        ">= 0, <= 1",
        "reject only when lingua is at least this sure",
    ]
    assert _row("generator.model")[2] == "required"
    assert _row("name")[3] == "matches `^[A-Za-z0-9_.-]+$`"
    assert _row("tasks")[1:3] == ["`list[section]`", "`[{}]`"]  # a factory, called
    assert _row("tasks[].clarity")[2] == '`{"clear": 1.0}`'  # a lambda factory, called
    assert _row("input.format")[1] == '`"auto" ¦ "jsonl" ¦ "parquet" ¦ "text"`'
    assert _row("lora")[1:3] == ["`section ¦ null`", "`null`"]
    # A section without a description of its own is described by its model's docstring.
    assert _row("dedup.near")[4].startswith("MinHash-LSH near-duplicate detection")
    assert _row("losses[]{name=matryoshka}.dims")[1:4] == ["`list[int]`", "required", "length >= 1"]


def test_type_names_read_as_yaml() -> None:
    assert type_name(Literal["vllm", "openai"]) == '"vllm" | "openai"'
    assert type_name(int | None) == "int | null"
    assert type_name(list[Path]) == "list[path]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(Annotated[list[int], Field(min_length=1)]) == "list[int]"
    assert type_name(dict[str, float]) == "dict[str, float]"


class ReferenceProbeFilter(Strict):
    """A check registered by this test only."""

    limit: int = Field(3, ge=1, description="the probe's limit")


def test_a_registered_check_joins_the_reference() -> None:
    probe = Filter(
        "reference_probe",
        order=651,
        build=lambda config, library, context: per_candidate(lambda candidate: None),
        reasons={"probe": "never"},
        settings=ReferenceProbeFilter,
    )
    with registered(probe):
        markdown = cli("config", "schema", "--markdown").stdout
        assert "| `filters.reference_probe.limit` | `int` | `3` | >= 1 | the probe's limit |" in (
            markdown
        )
        assert markdown != DOCS.read_text(encoding="utf-8")  # the docs test would fail now
    assert "reference_probe" not in cli("config", "schema", "--markdown").stdout


def test_json_schema_needs_no_instance() -> None:
    job = json.loads(cli("config", "schema").stdout)
    assert {"name", "input", "generator"} <= set(job["required"])
    assert "filters" in job["properties"] and job["additionalProperties"] is False
    train = json.loads(cli("config", "schema", "--train").stdout)
    assert {"model", "data", "output_dir"} <= set(train["required"])


def _init(*args: str | Path) -> Result:
    return cli("config", "init", *args)


def _loads_with_a_model(config: Path, model: Path) -> JobConfig:
    """The written file, its model placeholder replaced, through the job loader."""
    text = config.read_text(encoding="utf-8")
    assert text.count(MODEL_PLACEHOLDER) == 1
    config.write_text(text.replace(MODEL_PLACEHOLDER, str(model)), encoding="utf-8")
    return load_config(config)


def test_init_reads_the_columns_of_a_jsonl_corpus(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    corpus = write_jsonl(
        tmp_path / "data" / "my docs.jsonl",
        [{"_id": "d1", "title": "A", "body": "a passage about tides", "lang": "en"}],
    )
    out = tmp_path / "job.yaml"
    result = _init("--corpus", corpus, "--out", out)
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert 'path: "data/my docs.jsonl"' in text  # next to the config: moves with it
    assert "docs/config.md#generator" in text
    job = _loads_with_a_model(out, tmp_path / "model")
    assert job.name == "my-docs"
    assert job.input.path == corpus.resolve()
    assert (job.input.id_column, job.input.text_column) == ("_id", "body")
    assert (job.input.title_column, job.input.language_column) == ("title", "lang")
    assert [task.type for task in job.tasks] == ["retrieval"]
    assert job.generator.model == str(tmp_path / "model")
    check_layout(job.input)  # the survey's first look accepts the detected columns


def test_init_reads_the_columns_of_a_parquet_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "shop.parquet"
    pq.write_table(pa.table({"sku": ["1"], "description": ["a red lamp"], "n": [1]}), corpus)
    out = tmp_path / "job.yaml"
    assert _init("--corpus", corpus, "--out", out, "--family", "short_short").exit_code == 0
    job = _loads_with_a_model(out, tmp_path / "model")
    assert job.input.text_column == "description"  # the longest string of the first row
    assert (job.input.id_column, job.input.title_column) == (None, None)
    assert job.tasks[0].type == "short_short"
    check_layout(job.input)


@pytest.mark.parametrize("family", PromptLibrary(personas=[]).available())
def test_every_family_starts_a_config_that_loads(tmp_path: Path, family: str) -> None:
    out = tmp_path / "job.yaml"
    assert _init("--family", family, "--out", out).exit_code == 0
    job = _loads_with_a_model(out, tmp_path / "model")
    assert job.tasks[0].type == family
    assert (job.input.id_column, job.input.text_column) == ("id", "text")  # no corpus
    if PromptLibrary(personas=[]).task(family).cross_lingual:
        assert len(job.languages.query) > 1


def _one_line_error(result: Result, message: str) -> None:
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    out.write_text("mine\n", encoding="utf-8")
    _one_line_error(_init("--out", out), "exists; pass --force")
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert _init("--out", out, "--force").exit_code == 0
    assert "type: retrieval" in out.read_text(encoding="utf-8")


def test_init_names_the_known_families(tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    _one_line_error(_init("--family", "retreival", "--out", out), "known: bitext,")
    assert not out.exists()


def test_init_reports_a_missing_corpus(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    _one_line_error(_init("--corpus", missing, "--out", tmp_path / "job.yaml"), "not found")
