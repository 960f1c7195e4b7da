"""Target vs achieved mix, for the manifest and the dataset card.

The target is what the config's weights ask for: tasks by `tasks[].weight`, query languages
by `languages.query` (before `match_document` pulls towards each document's own language)
and difficulty by each task's `difficulty` weights (a task without them leaves difficulty to
the model, reported as `model's choice`). The achieved mix counts the kept pairs, so it
shows what the filters took out as well.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.job import JobConfig
from pipeline.prompts.library import PromptLibrary

MODEL_CHOICE = "model's choice"
# The dimensions the card tabulates; the first two and difficulty also make the mix cells.
MIX_COLUMNS = ("task", "language", "question_type", "difficulty", "persona")
CELL_COLUMNS = ("task", "language", "difficulty")


@dataclass
class MixCounts:
    """The kept pairs counted per mix column, shard by shard, from Arrow columns.

    Why not rows: a version of a million pairs made as Python dicts (texts and all) ran out
    of memory at the very end of a run. Each column's counter lists values in the order
    they first appear in the version (Arrow's value_counts keeps first-seen order, and
    shards are added in order), so ties in `most_common` and the achieved shares come out
    in the same order as counting the rows one by one; a null counts as None.
    """

    values: dict[str, Counter[str | None]] = field(
        default_factory=lambda: {column: Counter() for column in MIX_COLUMNS}
    )
    cells: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rows: int = 0

    def add(self, table: pa.Table | pa.RecordBatch) -> None:
        """Count one shard's (or batch's) mix columns."""
        self.rows += table.num_rows
        for column in MIX_COLUMNS:
            counted = pc.value_counts(table.column(column))
            names = counted.field("values").to_pylist()
            self.values[column].update(
                dict(zip(names, counted.field("counts").to_pylist(), strict=True))
            )
        keys = {c: table.column(c) for c in CELL_COLUMNS}
        keys["difficulty"] = _none_for_empty(keys["difficulty"])
        grouped = pa.table(keys).group_by(list(CELL_COLUMNS)).aggregate([([], "count_all")])
        for cell in grouped.to_pylist():
            self.cells[tuple(cell[c] for c in CELL_COLUMNS)] += cell["count_all"]


def _none_for_empty(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The column with null and "" both as "none" (what a pair without one is counted as)."""
    empty = pc.or_kleene(pc.is_null(column), pc.equal(column, ""))
    return pc.if_else(empty, pa.scalar("none"), column)


def _shares(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {key: round(value / total, 4) for key, value in weights.items()} if total else {}


def target_mix(config: JobConfig, library: PromptLibrary) -> dict[str, dict[str, float]]:
    """Target shares per dimension. Families without a difficulty (all but retrieval's)
    count as `none`, as their pairs do."""
    tasks = {task.type: task.weight for task in config.tasks}
    difficulty: Counter[str] = Counter()
    total = sum(tasks.values())
    for task in config.tasks:
        share = task.weight / total
        stages = library.task(task.type).stages
        graded = any("difficulty" in s.schema.get("properties", {}) for s in stages)
        default = [(MODEL_CHOICE if graded else "none", 1.0)]
        for level, weight in _shares(task.difficulty).items() or default:
            difficulty[level] += share * weight
    return {
        "task": _shares(tasks),
        "language": _shares(config.languages.query),
        "difficulty": {k: round(v, 4) for k, v in difficulty.items()},
    }


def achieved_mix(counts: MixCounts) -> dict[str, dict[str, float]]:
    """Achieved shares of the kept pairs per dimension (null and "" count as `none`)."""
    mix = {}
    for column in CELL_COLUMNS:
        merged: Counter[str] = Counter()
        for value, n in counts.values[column].items():  # first-seen order, as the rows had it
            merged[value or "none"] += n
        mix[column] = _shares(dict(merged))
    return mix


def mix_report(config: JobConfig, library: PromptLibrary, counts: MixCounts) -> dict[str, Any]:
    """The manifest's `mix`: target and achieved shares, and the task x language x
    difficulty cells of the kept pairs."""
    return {
        "target": target_mix(config, library),
        "achieved": achieved_mix(counts),
        "cells": [
            {"task": t, "language": lang, "difficulty": d, "pairs": n}
            for (t, lang, d), n in sorted(counts.cells.items())
        ],
    }


def mix_table(mix: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Rows (dimension, value, target, achieved) for the card."""
    rows = []
    for dimension, target in mix["target"].items():
        achieved = mix["achieved"].get(dimension, {})
        for value in dict.fromkeys([*target, *achieved]):
            rows.append(
                (dimension, value, f"{target.get(value, 0):.0%}", f"{achieved.get(value, 0):.0%}")
            )
    return rows
