"""`embsynth inspect VERSION_DIR`: the funnel, then samples of kept pairs and of rejects per
reason, so a user can see what each filter removed before trusting its threshold.

Only the sampled rows are read whole. The rows to show are chosen from row counts (kept
pairs) and from the `stage` and `reason` columns (rejects), then just those rows' row groups
are read: inspecting a version of a million pairs takes no more memory than a small one,
and, as `random.sample` picks by position, it shows the same rows it did when it loaded
every row.
"""

import random
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.errors import UserError
from pipeline.dataset.card import manifest_of, shards

KEPT_COLUMNS = ["query", "positive", "negatives"]
REJECT_COLUMNS = ["doc_id", "detail", "raw", "score"]


def _short(text: str | None, width: int = 110) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


class RowGroups:
    """A folder of shards addressed by global row number (shard order, as
    `pq.read_table(folder)` reads them), reading only the row groups a lookup needs."""

    def __init__(self, folder: Path) -> None:
        self.files = [pq.ParquetFile(path) for path in shards(folder)]
        self.groups = [(f, g) for f in self.files for g in range(f.metadata.num_row_groups)]
        sizes = [f.metadata.row_group(g).num_rows for f, g in self.groups]
        self.starts = [0, *accumulate(sizes)]

    @property
    def rows(self) -> int:
        """Rows in all shards."""
        return self.starts[-1]

    def take(self, indices: list[int], columns: list[str]) -> list[dict[str, Any]]:
        """The rows at `indices` (in that order), `columns` only."""
        found: dict[int, dict[str, Any]] = {}
        by_group: dict[int, list[int]] = {}
        for index in indices:
            by_group.setdefault(bisect_right(self.starts, index) - 1, []).append(index)
        for group, wanted in by_group.items():
            parquet, number = self.groups[group]
            table = parquet.read_row_group(number, columns=columns)
            offsets = [i - self.starts[group] for i in wanted]
            found.update(zip(wanted, table.take(offsets).to_pylist(), strict=True))
        return [found[i] for i in indices]

    def column(self, name: str) -> pa.ChunkedArray:
        """One (small) column of every row."""
        chunks = [f.read(columns=[name]).column(name) for f in self.files]
        return pa.chunked_array([c for chunk in chunks for c in chunk.chunks], pa.string())


def reasons(rejects: RowGroups) -> dict[tuple[str, str], np.ndarray]:
    """Each (stage, reason)'s row numbers, in row order, from those two columns alone."""
    if not rejects.rows:
        return {}
    table = pa.table(
        {
            "stage": rejects.column("stage"),
            "reason": rejects.column("reason"),
            "row": pa.array(np.arange(rejects.rows, dtype=np.int64)),
        }
    )
    grouped = table.group_by(["stage", "reason"], use_threads=False).aggregate([("row", "list")])
    columns = (grouped["stage"], grouped["reason"], grouped["row_list"])
    return {
        (stage.as_py(), reason.as_py()): np.sort(rows.values.to_numpy())
        for stage, reason, rows in zip(*columns, strict=True)
    }


def inspect_version(version: Path, samples: int = 3, seed: int = 0) -> str:
    """The report as text."""
    if not (version / "manifest.json").is_file():
        raise UserError(f"{version}: not a complete dataset version (no manifest.json)")
    manifest = manifest_of(version)
    rng = random.Random(seed)
    lines = [
        f"{manifest['name']} {manifest['version']}: {manifest['counts']['kept']} pairs kept",
        "",
    ]
    lines.append(f"{'step':<12} {'in':>7} {'out':>7}  rejected")
    for step in manifest.get("funnel", []):
        reasons_text = ", ".join(f"{k} {v}" for k, v in sorted(step["rejected"].items())) or "-"
        lines.append(f"{step['step']:<12} {step['in']:>7} {step['out']:>7}  {reasons_text}")
    kept = RowGroups(version / "data")
    picked = rng.sample(range(kept.rows), min(samples, kept.rows))
    lines += ["", f"kept ({len(picked)} of {kept.rows}):"]
    for row in kept.take(picked, KEPT_COLUMNS):
        lines.append(f"  query:    {_short(row['query'])}")
        lines.append(f"  positive: {_short(row['positive'])}")
        for negative in row["negatives"][:1]:
            lines.append(f"  negative: {_short(negative)}")
        lines.append("")
    rejects = RowGroups(version / "rejects")
    for (stage, reason), rows in sorted(reasons(rejects).items()):
        lines.append(f"rejected at {stage}: {reason} ({len(rows)}):")
        chosen = [int(rows[j]) for j in rng.sample(range(len(rows)), min(samples, len(rows)))]
        for row in rejects.take(chosen, REJECT_COLUMNS):
            score = "" if row.get("score") is None else f" [score {row['score']:.3g}]"
            lines.append(
                f"  {_short(row['raw']) or row['doc_id']}{score}  ({_short(row['detail'], 80)})"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
