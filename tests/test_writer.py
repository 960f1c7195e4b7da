"""Shards are written atomically; versions appear only once complete and are never reused."""

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.dataset.records import REJECT_SCHEMA
from pipeline.dataset.writer import ShardWriter, new_version, publish, versions


def row(i: int) -> dict:
    return {
        "doc_id": str(i),
        "task": "retrieval",
        "stage": "filter",
        "reason": "r",
        "detail": "",
        "raw": None,
    }


def test_shards_of_shard_size_and_no_temp_files(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "rejects", REJECT_SCHEMA, shard_size=4)
    writer.add([row(i) for i in range(3)])
    writer.add([row(i) for i in range(3, 10)])
    shards = writer.close()
    assert [s["rows"] for s in shards] == [4, 4, 2]
    assert sorted(p.name for p in (tmp_path / "rejects").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
    ]  # fmt: skip
    assert pq.read_table(tmp_path / "rejects" / "part-00002.parquet").column(
        "doc_id"
    ).to_pylist() == ["8", "9"]


def test_empty_output_still_has_one_readable_shard(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "data", REJECT_SCHEMA, shard_size=4)
    assert writer.close()[0]["rows"] == 0
    assert pq.read_table(tmp_path / "data" / "part-00000.parquet").schema.equals(REJECT_SCHEMA)


def test_versions_are_staged_then_published(tmp_path: Path) -> None:
    staging, final = new_version(tmp_path)
    assert staging.name == ".v0001.partial" and final.name == "v0001"
    assert versions(tmp_path) == []  # not visible until published
    publish(staging, final)
    assert versions(tmp_path) == [final]
    abandoned, _ = new_version(tmp_path)  # e.g. a crashed run
    staging, final = new_version(tmp_path)
    assert abandoned.name == ".v0002.partial" and final.name == "v0003"
