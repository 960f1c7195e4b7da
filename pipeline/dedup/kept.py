"""The queries a run keeps (normalized text, document id, vector), written out as they are
kept instead of held: a million kept queries are about 2 GB a run needs back once, when the
version's dedup state is saved.

They go to unlinked temp files (on the dataset's disk where the job says so), which the
kernel removes with the process however the run ends: a JSON line per query and its vector
as raw float32, written through the files' own small buffers, so nothing but a count grows
in memory. `save` reads them back in chunks into the version's Parquet state.
"""

import json
import tempfile
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.writer import atomic_path

CHUNK = 65_536  # kept queries per row group of the saved state


class KeptQueries:
    """Append-only kept queries; vectors are saved only when every kept query had one
    (and one was kept)."""

    def __init__(self, dimension: int, folder: Path | None = None) -> None:
        self.dimension = dimension
        self.rows = _temp(folder)
        self.vectors = _temp(folder) if dimension else None
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


def _temp(folder: Path | None) -> IO[bytes]:
    """An unlinked temp file held open for the run (`save` closes it)."""
    return tempfile.TemporaryFile(dir=folder, prefix=".kept-queries-")
