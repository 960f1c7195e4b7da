"""Which documents a dataset has already covered.

Every version records the content key (a hash of id and text) of each document it read in
`state/documents.parquet`. A refresh reads the corpus and keeps only documents whose key no
earlier version holds: a new id, or an old id with changed text, so a growing corpus costs
only its growth.
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import InputConfig
from pipeline.reader import read_batches
from pipeline.records import Document
from pipeline.writer import write_atomic

DOCUMENTS = Path("state") / "documents.parquet"


def covered(versions: list[Path]) -> set[str]:
    """Keys of every document the given versions read."""
    keys: set[str] = set()
    for version in versions:
        path = version / DOCUMENTS
        if path.is_file():
            keys.update(pq.read_table(path, columns=["key"]).column("key").to_pylist())
    return keys


def count_new(config: InputConfig, limit: int | None, seen: set[str]) -> int:
    """How many documents of the corpus no earlier version read."""
    return sum(doc.key not in seen for docs, _ in read_batches(config, limit) for doc in docs)


def write_covered(version: Path, docs: list[Document]) -> None:
    """Record the documents this version read."""
    (version / DOCUMENTS).parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"doc_id": [d.doc_id for d in docs], "key": [d.key for d in docs]})
    write_atomic(table, version / DOCUMENTS)
