"""The queries a run keeps (normalized text, document id, vector), written out as they are
kept instead of held: a million kept queries are about 2 GB a run needs back once, when the
version's dedup state is saved.

They go to unlinked temp files (on the dataset's disk where the job says so), which the
kernel removes with the process however the run ends: a JSON line per query and its vector
as raw float32, written through the files' own small buffers, so nothing but a count grows
in memory. `save` reads them back in chunks into the version's Parquet state.

A job that checkpoints (pipeline.run.checkpoint) keeps them as named files in its version's
staging folder instead (`named`): a checkpoint records how far they were written (`mark`)
and a resumed run reopens them cut back to that point (`reopen`), so what a run kept before
its last checkpoint is not kept again, nor lost.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.writer import atomic_path

CHUNK = 65_536  # kept queries per row group of the saved state
NAME = "kept-queries"  # the named files' stem: NAME.jsonl and NAME.f32


@dataclass(frozen=True)
class Mark:
    """How far named kept-query files were written: what a checkpoint records (not where:
    a dataset folder moved between a kill and its resume still resumes)."""

    dimension: int
    count: int
    vectorless: int
    rows_bytes: int
    vectors_bytes: int


class KeptQueries:
    """Append-only kept queries; vectors are saved only when every kept query had one
    (and one was kept)."""

    def __init__(self, dimension: int, folder: Path | None = None, named: bool = False) -> None:
        self.dimension = dimension
        self.folder = folder if named else None
        self.rows = _open(folder, ".jsonl", named)
        self.vectors = _open(folder, ".f32", named) if dimension else None
        self.count = 0
        self.vectorless = 0  # kept without a vector: then the state holds none

    def __len__(self) -> int:
        return self.count

    def add(self, text: str, doc_id: str, vector: np.ndarray | None) -> None:
        self.rows.write(json.dumps([text, doc_id], ensure_ascii=False).encode() + b"\n")
        if self.vectors is not None:
            self.vectorless += vector is None
            row = np.zeros(self.dimension) if vector is None else vector
            self.vectors.write(np.asarray(row, np.float32).tobytes())
        self.count += 1

    def mark(self) -> Mark:
        """Flush and sync the named files; how far they are written."""
        if self.folder is None:
            raise ValueError("only named kept-query files can be marked")
        sizes = []
        for handle in (self.rows, self.vectors):
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
            sizes.append(handle.tell() if handle is not None else 0)
        return Mark(self.dimension, self.count, self.vectorless, *sizes)

    @classmethod
    def reopen(cls, mark: Mark, folder: Path) -> "KeptQueries":
        """The named files in `folder`, cut back to the mark, appended to from there."""
        kept = cls.__new__(cls)
        kept.dimension, kept.folder = mark.dimension, folder
        kept.count, kept.vectorless = mark.count, mark.vectorless
        kept.rows = _reopen(folder / f"{NAME}.jsonl", mark.rows_bytes)
        kept.vectors = (
            _reopen(folder / f"{NAME}.f32", mark.vectors_bytes) if mark.dimension else None
        )
        return kept

    def save(self, path: Path) -> None:
        """Write every kept query to the Parquet file `path` (atomically); the last call."""
        fields = [pa.field("query_norm", pa.string()), pa.field("doc_id", pa.string())]
        vectors = self.vectors if self.count and not self.vectorless else None
        if vectors is not None:
            fields.append(pa.field("vector", pa.list_(pa.float32(), self.dimension)))
            vectors.seek(0)
        schema = pa.schema(fields)
        self.rows.seek(0)
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as out:
            while lines := list(islice(self.rows, CHUNK)):
                texts, docs = zip(*(json.loads(line) for line in lines), strict=True)
                columns = [pa.array(texts, pa.string()), pa.array(docs, pa.string())]
                if vectors is not None:
                    flat = np.frombuffer(vectors.read(len(lines) * self.dimension * 4), np.float32)
                    columns.append(pa.FixedSizeListArray.from_arrays(flat, self.dimension))
                out.write_table(pa.Table.from_arrays(columns, schema=schema))
        for handle in (self.rows, self.vectors):
            if handle is not None:
                handle.close()


def _open(folder: Path | None, suffix: str, named: bool) -> IO[bytes]:
    """An unlinked temp file held open for the run (`save` closes it), or with `named` a
    fresh FOLDER/NAME+suffix."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    if not named or folder is None:
        return tempfile.TemporaryFile(dir=folder, prefix=f".{NAME}-")
    return (folder / f"{NAME}{suffix}").open("w+b")


def _reopen(path: Path, size: int) -> IO[bytes]:
    handle = path.open("r+b")
    handle.truncate(size)
    handle.seek(size)
    return handle
