"""The CLI: one-line errors with exit code 2 for bad input, and a full run with a summary."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from tests.conftest import cli, write_jsonl


def embsynth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_user_error(result: subprocess.CompletedProcess[str] | Any, message: str) -> None:
    """Exit 2 and one line on stderr, from a process (returncode) or in-process (exit_code)."""
    code = (
        result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    )
    assert code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embsynth: error:"), result.stderr
    assert message in lines[0]


def test_missing_and_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "job.yaml"
    bad.write_text("name: x\ninput: {path: c.jsonl}\n")
    assert_user_error(embsynth("run", str(bad)), "missing key 'generator'")
    bad.write_text("name: x\ninput: {path: c.jsonl}\ngenerator: {model: ./m}\nsamplng: {}\n")
    assert_user_error(cli("run", bad), "unknown key 'samplng'")  # in-process from here on


def bad_input_cases(tmp_path: Path, tiny_model: Path) -> dict[str, tuple[dict[str, Any], str]]:
    corrupt = tmp_path / "corrupt.parquet"
    pq.write_table(pa.table({"text": ["a passage"] * 100}), corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # cut short: footer gone
    no_text = tmp_path / "body.jsonl"
    write_jsonl(no_text, [{"body": "a passage"}])
    good = write_jsonl(tmp_path / "ok.jsonl", [{"text": "a passage"}])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "thr\n', encoding="utf-8")
    return {
        "missing corpus": ({"input": {"path": str(tmp_path / "nope.jsonl")}}, "corpus not found"),
        "broken line": ({"input": {"path": str(broken)}}, "broken.jsonl:3: not valid JSON"),
        "corrupt parquet": ({"input": {"path": str(corrupt)}}, "not a readable Parquet file"),
        "no text column": ({"input": {"path": str(no_text)}}, "no field 'text' (has: body)"),
        "missing model": (
            {"input": {"path": str(good)}, "generator": {"model": str(tmp_path / "no-model")}},
            "model path does not exist",
        ),
        "teacher folder": (
            {"teacher": {"kind": "cross_encoder", "model": str(tmp_path / "no-teacher")}},
            "teacher.model: not a CrossEncoder folder",
        ),
        "teacher weight": (
            {"teacher": {"kind": "fused", "bm25_weight": -1}},
            "'teacher.bm25_weight'",
        ),
        "teacher stemmer": (
            {"teacher": {"kind": "fused", "bm25_stemmer": "klingon"}},
            "teacher.bm25_stemmer 'klingon': none or one of arabic,",
        ),
        "teacher scale": (
            {"teacher": {"kind": "llm", "scale": "rank"}},
            "teacher.scale and feedback are for kind fused, not llm",
        ),
        "teacher feedback": (
            {"teacher": {"kind": "fused", "feedback_docs": -3}},
            "'teacher.feedback_docs'",
        ),
        "teacher policy": (
            {"teacher": {"kind": "fused", "on_preferred_negative": "swap"}},
            "'teacher.on_preferred_negative'",
        ),
        "judge without teacher": (
            {"filters": {"round_trip": {"judge": "teacher"}}},
            "filters.round_trip.judge is teacher but teacher.kind is none",
        ),
        "mining without teacher": (
            {"negatives": {"ranked_by": "teacher"}},
            "negatives.ranked_by is teacher but teacher.kind is none",
        ),
        "judge threshold": (
            {"filters": {"llm_judge": {"enabled": True, "min_score": 1.5}}},
            "'filters.llm_judge.min_score'",
        ),
        "evaluation queries": (
            {"filters": {"decontamination": {"files": [str(tmp_path / "queries.jsonl")]}}},
            "no such query file",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["missing corpus", "broken line", "corrupt parquet", "no text column", "missing model",
     "teacher folder", "teacher weight", "teacher scale", "teacher feedback", "teacher policy",
     "judge without teacher", "mining without teacher", "judge threshold", "evaluation queries"],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, tmp_path: Path, tiny_model: Path, job_file: Callable[..., Path]
) -> None:
    """In this process: a fresh interpreter costs 11 s here, and the real command's exit
    code and stderr are tested above."""
    overrides, message = bad_input_cases(tmp_path, tiny_model)[case]
    result = cli("run", job_file(**overrides))
    assert_user_error(result, message)
    assert not (tmp_path / "out").exists()


def test_full_run_prints_a_summary(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    # Same model, seed and engine options as the session engine, so this reuses it.
    result = CliRunner().invoke(
        app, ["run", str(job_file()), "--limit", "6", "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    assert "pairs kept:" in result.output and "tokens/s:" in result.output
    assert "computed prompt tokens per kept pair" in result.output
    version = tmp_path / "cli" / "t" / "v0001"
    assert (version / "manifest.json").is_file()
    # The engine's own output went to the version's log, not the console.
    assert (version / "logs" / "engine.log").is_file()
