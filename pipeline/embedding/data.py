"""Training examples from embsynth dataset versions (the pair Parquet the generator writes).

A version folder is complete only when its manifest exists, so a half-written or crashed
version is refused rather than silently trained on. Rows keep the columns the trainer uses:
query, positive, hard negatives and instruction (texts themselves key the same-text mask).
Read together, a later version of a dataset supersedes the earlier versions' pairs of the
documents it lists as changed or deleted (pipeline.dataset.refresh): their text is not
the corpus's any more, so they are left out.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config.errors import UserError
from pipeline.dataset.manifest import write_json_atomic
from pipeline.dataset.records import PAIR_SCHEMA, pair_id
from pipeline.dataset.refresh import superseded_later
from pipeline.dataset.writer import ShardWriter, data_shards, latest_version

COLUMNS = ["query", "positive", "negatives", "instruction"]
TEACHER = "teacher_scores"  # optional: the teacher's score of the positive, then each negative
DOC_ID = "doc_id"  # optional: what a later version's superseded list names
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


@dataclass(frozen=True)
class Example:
    """One training pair with its hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    instruction: str
    # The teacher's scores of (positive, *negatives), None where it gave none; empty when
    # the data has no teacher scores (see pipeline.teacher).
    teacher_scores: tuple[float | None, ...] = ()
    # The document the pair was made from, when the data names it (the validation split
    # holds out whole documents: pipeline.embedding.split).
    doc_id: str = ""


def load_examples(versions: list[Path], max_negatives: int) -> list[Example]:
    """All pairs of the given dataset versions, in file order, but those a later version
    among them superseded."""
    examples: list[Example] = []
    chosen = [latest_version(version) for version in versions]
    retired = superseded_later(chosen)
    for version in chosen:
        for shard in data_shards(version):
            names = pq.read_schema(shard).names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise UserError(f"{shard}: missing columns {', '.join(missing)}")
            columns = COLUMNS + [TEACHER] * (TEACHER in names) + [DOC_ID] * (DOC_ID in names)
            for row in pq.read_table(shard, columns=columns).to_pylist():
                if row.get(DOC_ID) in retired[version]:
                    continue
                negatives = tuple(row["negatives"] or ())[:max_negatives]
                examples.append(
                    Example(
                        query=row["query"],
                        positive=row["positive"],
                        negatives=negatives,
                        instruction=row["instruction"] or "",
                        teacher_scores=tuple(row.get(TEACHER) or ())[: 1 + len(negatives)],
                        doc_id=str(row.get(DOC_ID) or ""),
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


def write_version(folder: Path, pairs: list[dict[str, Any]]) -> Path:
    """Write existing pairs as a finished dataset version the trainer reads.

    For pairs made elsewhere (and for tests and benchmarks): each gives query, positive and
    doc_id, and may give negatives and instruction; the generation-side columns of the pair
    schema get neutral values.
    """
    defaults = {
        "instruction": INSTRUCTION,
        "negatives": [],
        "negative_scores": [],
        "teacher_scores": [],
        "task": "retrieval",
        "language": "und",
        "model": "imported",
        "template_hash": "",
        "sampling": "{}",
        "seed": 0,
    }
    rows = []
    for pair in pairs:
        row: dict[str, Any] = dict.fromkeys(PAIR_SCHEMA.names)
        row |= defaults | pair
        row["pair_id"] = pair_id(row["doc_id"], row["task"], row["query"])
        rows.append(row)
    writer = ShardWriter(folder / "data", PAIR_SCHEMA, shard_size=10000)
    writer.add(rows)
    write_json_atomic(
        {"files": {"data": writer.close()}, "imported": len(rows)}, folder / "manifest.json"
    )
    return folder
