"""`embsynth export`: each trainer's layout, loaded with the real library where it is
installed offline (sentence-transformers: one real training step), by schema otherwise."""

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.embedding.data import write_version
from pipeline.export.dataset import export
from tests.conftest import cli
from tests.test_cli import assert_user_error

PAIRS = [
    {"query": "boundary layer transition", "positive": "Transition of the boundary layer ...",
     "negatives": ["Shock waves in nozzles ...", "Heat transfer at Mach 3 ..."],
     "teacher_scores": [0.81, 0.42, None], "doc_id": "d1", "task": "retrieval",
     "instruction": "Given a question, retrieve passages that answer it"},
    {"query": "The charger broke after a week.", "positive": "negative",
     "negatives": ["positive"], "teacher_scores": [], "doc_id": "d2",
     "task": "classification", "instruction": "Classify the sentiment of a review"},
]  # fmt: skip


@pytest.fixture
def version(tmp_path: Path) -> Path:
    return write_version(tmp_path / "data" / "v0001", PAIRS)


def lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((folder / "data").glob("*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines()]  # fmt: skip


def test_sentence_transformers_export_trains_a_real_step(
    title_pairs: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    out = tmp_path / "st"
    result = cli("export", title_pairs, "--format", "sentence-transformers", "--out", out,
                 "--instructions", "none", "--shard-size", "20")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 48 pairs (3 shards)" in result.output
    train = load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert train.column_names == ["anchor", "positive", "negative_1"]
    source = pq.read_table(title_pairs / "data").to_pylist()
    assert sorted(train["anchor"]) == sorted(r["query"] for r in source)
    by_query = {r["query"]: r for r in source}
    for row in train:
        assert row["positive"] == by_query[row["anchor"]]["positive"]
        assert [row["negative_1"]] == by_query[row["anchor"]]["negatives"]

    model = SentenceTransformer(str(tiny_encoder), device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=8,
        learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train, loss=MultipleNegativesRankingLoss(model)
    )
    output = trainer.train()
    assert output.global_step == 1 and output.training_loss > 0
    after = list(model.parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, after, strict=True))
    readme = (out / "README.md").read_text()
    assert "SentenceTransformerTrainer" in readme and "pairs: 48" in readme


def test_flagembedding_carries_prompt_and_teacher_scores(version: Path, tmp_path: Path) -> None:
    export([version], "flagembedding", tmp_path / "flag")
    first, second = lines(tmp_path / "flag")
    assert first == {"query": PAIRS[0]["query"], "pos": [PAIRS[0]["positive"]],
                     "neg": PAIRS[0]["negatives"], "prompt": PAIRS[0]["instruction"],
                     "pos_scores": [pytest.approx(0.81)],
                     "neg_scores": [pytest.approx(0.42), 0.0], "type": "retrieval"}  # fmt: skip
    assert "pos_scores" not in second and second["prompt"] == PAIRS[1]["instruction"]
    assert "knowledge_distillation" in (tmp_path / "flag" / "README.md").read_text()


def test_tevatron_and_jsonl(version: Path, tmp_path: Path) -> None:
    export([version], "tevatron", tmp_path / "tev")
    first = lines(tmp_path / "tev")[0]
    assert set(first) == {"query_id", "query", "positive_passages", "negative_passages"}
    assert first["query"] == f"Instruct: {PAIRS[0]['instruction']}\nQuery:{PAIRS[0]['query']}"
    assert [p["text"] for p in first["positive_passages"]] == [PAIRS[0]["positive"]]
    assert [p["text"] for p in first["negative_passages"]] == PAIRS[0]["negatives"]
    ids = [p["docid"] for p in first["negative_passages"]]
    assert len(set(ids)) == 2 and all(set(p) == {"docid", "title", "text"}
                                      for p in first["negative_passages"])  # fmt: skip

    export([version], "jsonl", tmp_path / "plain", instructions="none")
    source = pq.read_table(version / "data").to_pylist()
    exported = lines(tmp_path / "plain")
    assert [r["pair_id"] for r in exported] == [r["pair_id"] for r in source]
    for mine, theirs in zip(exported, source, strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            assert mine[key] == (pytest.approx(value) if key == "teacher_scores" else value)


def test_a_version_without_negatives(tmp_path: Path) -> None:
    bare = write_version(tmp_path / "bare" / "v0001",
                         [{k: v for k, v in p.items() if k not in ("negatives", "teacher_scores")}
                          for p in PAIRS])  # fmt: skip
    summary = export([bare], "sentence-transformers", tmp_path / "st")
    assert summary.negatives == 0 and summary.rows == 2
    assert pq.read_table(tmp_path / "st" / "data").column_names == ["anchor", "positive"]
    export([bare], "flagembedding", tmp_path / "flag")
    assert [r["neg"] for r in lines(tmp_path / "flag")] == [[], []]


def test_negative_columns_all_versions_and_bad_input(version: Path, tmp_path: Path) -> None:
    write_version(version.parent / "v0002", PAIRS[:1])
    summary = export([version.parent], "sentence-transformers", tmp_path / "two",
                     which="all", negatives=2)  # fmt: skip
    assert (summary.rows, summary.skipped) == (2, 1)  # the classification pair has one
    table = pq.read_table(tmp_path / "two" / "data")
    assert table.column_names == ["anchor", "positive", "negative_1", "negative_2"]

    missing = tmp_path / "nope" / "v0009"
    out = tmp_path / "bad"
    assert_user_error(cli("export", str(missing), "--format", "jsonl", "--out", str(out)),
                      "not a finished dataset version")  # fmt: skip
    assert_user_error(cli("export", str(version), "--format", "bge", "--out", str(out)),
                      "--format must be one of")  # fmt: skip
    taken = cli("export", str(version), "--format", "jsonl", "--out", str(tmp_path / "two"))
    assert_user_error(taken, "already exists and is not empty")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
