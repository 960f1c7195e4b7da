"""Scheduled refresh: a new version from only new or changed documents, nothing written
when nothing is new, and a retrain over all versions or the newest."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.errors import NothingToDo
from pipeline.config.job import load_config
from pipeline.dataset.writer import chosen_versions
from pipeline.run.job import run_job
from tests.conftest import SAMPLE_CORPUS, write_jsonl


def test_refresh_generates_only_for_new_and_changed_documents(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows[:8])
    path = job_file(input={"path": str(corpus), "batch_size": 16})
    first = run_job(load_config(path), generator=generator, progress=False)
    root = first.version_dir.parent

    with pytest.raises(NothingToDo, match="no new or changed documents since v0001"):
        run_job(load_config(path), generator=generator, progress=False, refresh=True)
    result = CliRunner().invoke(app, ["refresh", str(path)])
    assert result.exit_code == 0 and "nothing written" in result.output
    assert sorted(p.name for p in root.iterdir() if p.name != "state") == ["v0001"]

    changed = dict(rows[3], text=rows[3]["text"] + " It was revised in 2026.")
    write_jsonl(corpus, [*rows[:3], changed, *rows[4:8], *rows[8:10]])  # 1 changed, 2 new
    second = run_job(load_config(path), generator=generator, progress=False, refresh=True)
    assert second.version_dir.name == "v0002" and second.documents == 3
    assert second.requests_generated <= 2 * 3  # two stages for three documents at most
    fresh = {rows[3]["id"], rows[8]["id"], rows[9]["id"]}
    pairs = pq.read_table(second.version_dir / "data").to_pylist()
    assert pairs and {p["doc_id"] for p in pairs} <= fresh
    manifest = json.loads((second.version_dir / "manifest.json").read_text())
    assert manifest["parent_version"] == "v0001"
    assert manifest["refresh"] == {"since": "v0001", "new_documents": 3}

    # A cron retrain takes the dataset folder: the newest version, or all of them.
    assert chosen_versions(root, "latest") == [second.version_dir]
    assert chosen_versions(root, "all") == [first.version_dir, second.version_dir]
    assert chosen_versions(first.version_dir, "all") == [first.version_dir]
