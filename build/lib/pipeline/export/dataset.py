"""Write dataset versions in another trainer's layout, atomically, with a README.

The export is built in a hidden folder beside `out` and renamed into place when complete,
like a version: a folder named `out` is always a whole export. Rows stream shard by shard
from the versions' Parquet (never the whole dataset in memory); the sentence-transformers
layout first reads the negatives column alone to choose its number of negative columns.

Exported together, a later version supersedes the earlier versions' pairs of documents it
lists as changed or deleted (pipeline.dataset.refresh): they are left out and counted, so
`--all` trains on the corpus as it is now. Exporting one version by name keeps all of it.
"""

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.errors import UserError
from pipeline.dataset.refresh import superseded_later
from pipeline.dataset.writer import atomic_path, chosen_versions, data_shards, write_atomic
from pipeline.export.formats import LINE_FORMATS, Instructions, sentence_transformers
from pipeline.export.readme import readme_text

SHARD = "part-{:05d}"


@dataclass
class ExportSummary:
    """What an export wrote."""

    out: Path
    rows: int
    skipped: int  # rows left out: fewer negatives than the sentence-transformers columns
    shards: int
    negatives: int | None  # the sentence-transformers negative columns
    superseded: int = 0  # rows left out: a later version retired their document


def shards_of(versions: list[Path]) -> Iterator[tuple[Path, set[str]]]:
    """Each shard of the versions, with the doc_ids whose pairs a later version superseded."""
    retired = superseded_later(versions)
    for version in versions:
        for shard in data_shards(version):
            yield shard, retired[version]


def rows_of(versions: list[Path], summary: ExportSummary) -> Iterator[dict[str, Any]]:
    """Every pair of the versions no later one superseded, shard by shard (those left out
    are counted in `summary`)."""
    for shard, retired in shards_of(versions):
        for row in pq.read_table(shard).to_pylist():
            if row.get("doc_id") in retired:
                summary.superseded += 1
            else:
                yield row


def negative_counts(versions: list[Path]) -> list[int]:
    """The negatives of each pair `rows_of` gives."""
    counts = []
    for shard, retired in shards_of(versions):
        table = pq.read_table(shard, columns=["negatives", "doc_id"]).to_pydict()
        counts += [
            len(negatives)
            for negatives, doc in zip(table["negatives"], table["doc_id"], strict=True)
            if doc not in retired
        ]
    return counts


def resolve(paths: list[Path], which: str) -> list[Path]:
    """The finished versions named (a dataset folder: its newest, or all with `which`),
    each with its shards (checked before anything is written)."""
    found = list(dict.fromkeys(v for path in paths for v in chosen_versions(path, which)))
    for version in found:
        data_shards(version)
    return found


def export(
    paths: list[Path],
    fmt: str,
    out: Path,
    which: str = "latest",
    instructions: Instructions = "inline",
    negatives: int | None = None,
    shard_size: int = 10000,
) -> ExportSummary:
    """Export the versions at `paths` to `out` in format `fmt` (see pipeline.export.formats)."""
    if fmt != "sentence-transformers" and fmt not in LINE_FORMATS:
        raise UserError(f"unknown format {fmt!r}")
    versions = resolve(paths, which)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty: choose another --out")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # an earlier export that was killed
    (staging / "data").mkdir(parents=True)
    try:
        summary = _write(versions, fmt, staging, instructions, negatives, shard_size)
        text = readme_text(fmt, versions, summary.rows, summary.skipped, summary.negatives,
                           instructions, summary.superseded)  # fmt: skip
        (staging / "README.md").write_text(text, encoding="utf-8")
        (staging / "export.json").write_text(
            json.dumps({"format": fmt, "versions": [str(v) for v in versions],
                        "rows": summary.rows, "skipped": summary.skipped,
                        "negatives": summary.negatives, "instructions": instructions,
                        "superseded": summary.superseded},
                       indent=2), encoding="utf-8",
        )  # fmt: skip
        if out.exists():
            out.rmdir()  # empty (checked above)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.out = out
    return summary


def _write(
    versions: list[Path],
    fmt: str,
    folder: Path,
    instructions: Instructions,
    negatives: int | None,
    shard_size: int,
) -> ExportSummary:
    columns = None
    if fmt == "sentence-transformers":
        counts = negative_counts(versions)
        columns = min(counts, default=0) if negatives is None else negatives
    shard: list[dict[str, Any]] = []
    rows = skipped = shards = 0
    summary = ExportSummary(folder, 0, 0, 0, columns)

    def flush() -> None:
        nonlocal shards
        if not shard:
            return
        name = SHARD.format(shards)
        if columns is not None:
            write_atomic(pa.Table.from_pylist(shard), folder / "data" / f"{name}.parquet")
        else:
            with atomic_path(folder / "data" / f"{name}.jsonl") as tmp:
                lines = (json.dumps(r, ensure_ascii=False, default=str) for r in shard)
                tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        shards += 1
        shard.clear()

    for row in rows_of(versions, summary):
        if columns is not None:
            if len(row["negatives"]) < columns:
                skipped += 1
                continue
            shard.append(sentence_transformers(row, instructions, columns))
        else:
            shard.append(LINE_FORMATS[fmt](row, instructions))
        rows += 1
        if len(shard) >= shard_size:
            flush()
    flush()
    if rows == 0:
        why = f"every pair has fewer than {columns} negatives" if skipped else "no pairs"
        if summary.superseded and not skipped:
            why = f"every pair ({summary.superseded}) is superseded by a later version"
        raise UserError(f"nothing to export: {why}")
    summary.rows, summary.skipped, summary.shards = rows, skipped, shards
    return summary
