"""`embsynth embed`: vectors for one text column of a JSONL or Parquet file.

The input streams through the corpus reader (same id rules: a given id column, else the
content hash; empty texts are skipped and counted), and the vectors go to one Parquet file
(`id`, `vector`) written atomically, so a crash never leaves a file that looks complete.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.config.errors import UserError
from pipeline.config.job import InputConfig
from pipeline.corpus.reader import count_rows, read_batches
from pipeline.dataset.writer import atomic_path
from pipeline.embedding.inference import Embedder


def embed_file(
    embedder: Embedder,
    source: InputConfig,
    out: Path,
    kind: str,
    instruction: str | None = None,
    dim: int | None = None,
    progress: bool = False,
) -> tuple[int, int]:
    """Write vectors of `source`'s text column to `out`; returns (embedded, skipped)."""
    embedded = skipped = 0
    writer: pq.ParquetWriter | None = None
    bar = tqdm(total=count_rows(source), desc="embed", unit="text", disable=not progress)
    with atomic_path(out) as tmp, bar:
        for docs, rejects in read_batches(source):
            skipped += len(rejects)
            bar.update(len(rejects))
            if not docs:
                continue
            texts = [d.text for d in docs]
            if kind == "query":
                vectors = embedder.encode_queries(texts, instruction, dim, bar.update)
            else:
                vectors = embedder.encode_documents(texts, dim, bar.update)
            size = vectors.shape[1]
            table = pa.table(
                {
                    "id": [d.doc_id for d in docs],
                    "vector": pa.FixedSizeListArray.from_arrays(
                        pa.array(vectors.reshape(-1)), size
                    ),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            embedded += len(docs)
        if writer is None:
            raise UserError(f"{source.path}: no non-empty texts to embed")
        writer.close()
    return embedded, skipped
