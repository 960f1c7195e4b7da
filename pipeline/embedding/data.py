"""Training examples from embsynth dataset versions (the pair Parquet the generator writes).

A version folder is complete only when its manifest exists, so a half-written or crashed
version is refused rather than silently trained on. Rows keep the columns the trainer uses:
query, positive, hard negatives, instruction and the document id (for the same-text mask).
"""

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.errors import UserError

COLUMNS = ["query", "positive", "negatives", "instruction", "doc_id"]


@dataclass(frozen=True)
class Example:
    """One training pair with its hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    instruction: str
    doc_id: str


def _shards(version: Path) -> list[Path]:
    if not (version / "manifest.json").is_file():
        raise UserError(f"{version}: not a finished dataset version (no manifest.json)")
    shards = sorted((version / "data").glob("*.parquet"))
    if not shards:
        raise UserError(f"{version}: no data/*.parquet shards")
    return shards


def load_examples(versions: list[Path], max_negatives: int) -> list[Example]:
    """All pairs of the given dataset versions, in file order."""
    examples: list[Example] = []
    for version in versions:
        for shard in _shards(version):
            names = pq.read_schema(shard).names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise UserError(f"{shard}: missing columns {', '.join(missing)}")
            for row in pq.read_table(shard, columns=COLUMNS).to_pylist():
                examples.append(
                    Example(
                        query=row["query"],
                        positive=row["positive"],
                        negatives=tuple(row["negatives"] or ())[:max_negatives],
                        instruction=row["instruction"] or "",
                        doc_id=row["doc_id"],
                    )
                )
    if not examples:
        raise UserError("the training data holds no pairs")
    return examples


def epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    """The shuffled example order of an epoch: a function of (seed, epoch) alone, so a
    resumed run walks the same order as an uninterrupted one."""
    order = list(range(size))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order
