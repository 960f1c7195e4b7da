"""The queries a run keeps (normalized text, document id, vector), written out as they are
kept instead of held: a million kept queries are about 2 GB a run needs back once, when the
version's dedup state is saved.

They go to an unlinked temp file (on the dataset's disk where the job says so), which the
kernel removes with the process however the run ends; `save` copies them into the version's
state in one pass, batch by batch.
"""

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.writer import atomic_path

ROW_GROUP = 16_384  # kept rows buffered before they are written out


class KeptQueries:
    """Append-only kept queries; vectors are saved only when every kept query had one
    (and one was kept)."""

    def __init__(self, dimension: int, folder: Path | None = None) -> None:
        fields = [pa.field("query_norm", pa.string()), pa.field("doc_id", pa.string())]
        if dimension:
            fields.append(pa.field("vector", pa.list_(pa.float32(), dimension)))
        self.schema = pa.schema(fields)
        self.dimension = dimension
        # Held open for the run (unlinked: nothing to clean up); `save` closes it.
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".kept-queries-")  # noqa: SIM115
        self.writer = pq.ParquetWriter(self.file, self.schema)
        self.buffer: tuple[list[str], list[str], list[np.ndarray]] = ([], [], [])
        self.count = 0
        self.vectorless = 0  # kept without a vector: then the state holds none

    def __len__(self) -> int:
        return self.count

    def add(self, text: str, doc_id: str, vector: np.ndarray | None) -> None:
        texts, docs, vectors = self.buffer
        texts.append(text)
        docs.append(doc_id)
        if vector is None:
            self.vectorless += 1
        vectors.append(np.zeros(self.dimension, np.float32) if vector is None else vector)
        self.count += 1
        if len(texts) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        texts, docs, vectors = self.buffer
        if not texts:
            return
        columns = [pa.array(texts, pa.string()), pa.array(docs, pa.string())]
        if self.dimension:
            flat = np.stack(vectors).astype(np.float32).reshape(-1)
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), self.dimension))
        self.writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.buffer = ([], [], [])

    def save(self, path: Path) -> None:
        """Write every kept query to the Parquet file `path` (atomically); the last call."""
        self._flush()
        self.writer.close()
        self.file.seek(0)
        source = pq.ParquetFile(self.file)
        vectors = self.count and not self.vectorless
        keep = self.schema if vectors else pa.schema(list(self.schema)[:2])
        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, keep, compression="zstd") as out:
            for batch in source.iter_batches(columns=keep.names):
                out.write_batch(batch)
        self.file.close()
