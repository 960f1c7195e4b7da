"""Target vs achieved mix, for the manifest and the dataset card.

The target is what the config's weights ask for: tasks by `tasks[].weight`, query languages
by `languages.query` (before `match_document` pulls towards each document's own language)
and difficulty by each task's `difficulty` weights (a task without them leaves difficulty to
the model, reported as `model's choice`). The achieved mix counts the kept pairs, so it
shows what the filters took out as well.
"""

from collections import Counter
from typing import Any

from pipeline.config import JobConfig
from pipeline.prompts.library import PromptLibrary

MODEL_CHOICE = "model's choice"


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


def achieved_mix(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Achieved shares of the kept pairs per dimension."""
    mix = {}
    for column in ("task", "language", "difficulty"):
        counts = Counter(row[column] or "none" for row in rows)
        mix[column] = _shares(dict(counts))
    return mix


def mix_report(
    config: JobConfig, library: PromptLibrary, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest's `mix`: target and achieved shares, and the task x language x
    difficulty cells of the kept pairs."""
    cells = Counter((r["task"], r["language"], r["difficulty"] or "none") for r in rows)
    return {
        "target": target_mix(config, library),
        "achieved": achieved_mix(rows),
        "cells": [
            {"task": t, "language": lang, "difficulty": d, "pairs": n}
            for (t, lang, d), n in sorted(cells.items())
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
