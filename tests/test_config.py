"""Job config validation: errors name the key and the file; paths resolve next to the file."""

from pathlib import Path

import pytest
import yaml

from pipeline.config.errors import UserError
from pipeline.config.job import load_config
from pipeline.embedding.train_config import load_train_config

BASE = {"name": "j", "input": {"path": "corpus.jsonl"}, "generator": {"model": "./m"}}


def write(tmp_path: Path, job: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.input.path == tmp_path / "corpus.jsonl"
    assert config.generator.model == str(tmp_path / "m")
    assert config.output.dir == tmp_path / "out"


def test_hub_ids_are_left_alone(tmp_path: Path) -> None:
    job = {**BASE, "generator": {"model": "Qwen/Qwen3-8B"}}
    assert load_config(write(tmp_path, job)).generator.model == "Qwen/Qwen3-8B"


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"name": "j", "input": {"path": "c.jsonl"}}, "missing key 'generator'"),
        ({**BASE, "input": {"path": "c", "txt_column": "x"}}, "unknown key 'input.txt_column'"),
        (
            {**BASE, "sampling": {"query": {"temprature": 1}}},
            "unknown key 'sampling.query.temprature'",
        ),
        ({**BASE, "languages": {"query": ["english"]}}, "'languages.query'"),
        ({**BASE, "tasks": [{"query_words": [9, 3]}]}, "'tasks.0.query_words'"),
        ({**BASE, "name": "a b"}, "'name'"),
        ({**BASE, "tasks": [{"query_words": [3, 60]}]}, "filters.max_query_words is 40"),
        ({**BASE, "tasks": []}, "'tasks': List should have at least 1 item"),
        ({**BASE, "tasks": [{"type": "../etc"}]}, "'tasks.0.type'"),
        ({**BASE, "tasks": [{"samples": 0}]}, "'tasks.0.samples'"),
        ({**BASE, "tasks": [{"samples": 9}]}, "'tasks.0.samples'"),
        (
            {**BASE, "filters": {"min_query_words": 30, "max_query_words": 20}},
            "min_query_words is larger",
        ),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path: Path, job: dict, message: str) -> None:
    path = write(tmp_path, job)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_fingerprint_changes_with_the_config(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, BASE)).fingerprint()
    second = load_config(write(tmp_path, {**BASE, "seed": 5})).fingerprint()
    assert first != second
    assert first == load_config(write(tmp_path, BASE)).fingerprint()


def test_home_relative_paths_expand(tmp_path: Path) -> None:
    job = {**BASE, "input": {"path": "~/corpus.jsonl"}}
    assert load_config(write(tmp_path, job)).input.path == Path.home() / "corpus.jsonl"


BUNDLED = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_configs_load(path: Path) -> None:
    """Every bundled config validates as what it is (a job, or a training config), so a
    key a session adds to one of them is a key the code knows."""
    if path.name.startswith("train-"):
        config = load_train_config(path)
        assert config.loss.distill == "margin_mse" and config.select is not None
        assert config.select.fits == ["none", "encoder"]
        # One recipe for every collection: only where it reads and writes differs.
        other = load_train_config(next(p for p in BUNDLED if p.name.startswith("train-")))
        where = {"data", "output_dir"}
        assert config.model_dump(exclude=where | {"adapter"}) == other.model_dump(
            exclude=where | {"adapter"}
        )
        assert config.adapter is not None and other.adapter is not None
        assert config.adapter.model_dump(exclude={"job"}) == other.adapter.model_dump(
            exclude={"job"}
        )
    else:
        job = load_config(path)
        assert job.tasks and job.output.dir.is_absolute()
