"""The corpus index's ids and texts as Arrow columns instead of a Python string per document:
written once per corpus state (`texts.arrow` in its folder, pipeline.corpus.vectors) and
memory-mapped, so a job's process holds pages the OS can drop rather than a million strings,
and a Ray actor reopens the file by its path instead of unpickling a copy: the actors of a
node read the one copy in the page cache.

Lookups by document id (a query's own row) and by text (a negative's row) go through
sorted 64-bit digests stored beside the columns, each hit checked against the column, not
through dicts of every id and text.
"""

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np
import pyarrow as pa

from pipeline.dataset.records import Document
from pipeline.dedup.text import text_key

TEXTS = "texts.arrow"
CHUNK = 8192  # rows per record batch, and per slice read back as Python strings
SCHEMA = pa.schema(
    [
        ("doc_id", pa.large_string()),
        ("text", pa.large_string()),
        ("key", pa.string()),  # the exact-duplicate key of the text (pipeline.dedup.text)
        ("id_digest", pa.uint64()),
        ("text_digest", pa.uint64()),
    ]
)


def digest64(value: str) -> int:
    """A 64-bit digest of a string, stable across processes (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")


def record_batch(documents: list[Document]) -> pa.RecordBatch:
    """The columns of `documents`, in their order."""
    ids = [d.doc_id for d in documents]
    texts = [d.text for d in documents]
    return pa.record_batch(
        [ids, texts, [text_key(t) for t in texts], [digest64(i) for i in ids],
         [digest64(t) for t in texts]],
        schema=SCHEMA,
    )  # fmt: skip


def write_columns(path: Path, batches: Iterable[list[Document]]) -> None:
    """Write the documents of `batches` to `path` whole or not at all (a temp file renamed
    into place: a kill never leaves a short file under the name; the next write removes
    the temp file a kill left). Called under the dataset's lock: no other writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            for documents in batches:
                for start in range(0, len(documents), CHUNK):
                    writer.write_batch(record_batch(documents[start : start + CHUNK]))
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)


class Column(Sequence[str]):
    """One string column, read a row or a chunk at a time."""

    def __init__(self, values: pa.ChunkedArray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> list[str]: ...
    def __getitem__(self, row: int | slice) -> str | list[str]:
        if isinstance(row, slice):
            return self.values[row].to_pylist()
        return self.values[int(row)].as_py()

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), CHUNK):
            yield from self.values[start : start + CHUNK].to_pylist()


class Lookup:
    """Rows by value through a column's sorted digests; the first row holding the value."""

    def __init__(self, column: Column, digests: np.ndarray) -> None:
        self.column = column
        self.order = np.argsort(digests, kind="stable")
        self.sorted = digests[self.order]

    def find(self, value: str) -> int | None:
        digest = np.uint64(digest64(value))
        at = int(np.searchsorted(self.sorted, digest))
        while at < len(self.sorted) and self.sorted[at] == digest:
            row = int(self.order[at])
            if self.column[row] == value:
                return row
            at += 1
        return None


class Rows(Mapping[str, int]):
    """A document's row by its id, as a read-only mapping."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    def __getitem__(self, doc_id: str) -> int:
        row = self.lookup.find(doc_id)
        if row is None:
            raise KeyError(doc_id)
        return row

    def __len__(self) -> int:
        return len(self.lookup.column)

    def __iter__(self) -> Iterator[str]:
        return iter(self.lookup.column)


class CorpusColumns:
    """The documents of a corpus index: ids, texts, text keys and lookups (see the module).
    Memory-mapped from `path`, or held in memory when built from documents (a small corpus,
    a test, the adapter's and validation's own corpora)."""

    def __init__(self, table: pa.Table, path: Path | None = None) -> None:
        self.table = table
        self.path = path
        self.doc_ids = Column(table.column("doc_id"))
        self.texts = Column(table.column("text"))
        self.keys = Column(table.column("key"))
        self.rows = Rows(Lookup(self.doc_ids, _numbers(table.column("id_digest"))))
        _refuse_id_clashes(self)

    @cached_property
    def by_text(self) -> Lookup:
        """A text's first row (the teacher's judge names a negative's row by it); sorted on
        first use, as no other step looks a text up."""
        return Lookup(self.texts, _numbers(self.table.column("text_digest")))

    @classmethod
    def from_documents(cls, documents: list[Document]) -> "CorpusColumns":
        batches = [record_batch(documents[s : s + CHUNK]) for s in range(0, len(documents), CHUNK)]
        return cls(pa.Table.from_batches(batches, schema=SCHEMA))

    @classmethod
    def open(cls, path: Path) -> "CorpusColumns":
        """The columns written at `path`, memory-mapped."""
        with pa.memory_map(str(path)) as source:
            return cls(pa.ipc.open_file(source).read_all(), path)

    def __len__(self) -> int:
        return self.table.num_rows

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by path when memory-mapped: the receiving process maps the same file."""
        if self.path is not None:
            return (CorpusColumns.open, (self.path,))
        return (CorpusColumns, (self.table,))


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy() if len(column) else np.zeros(0, dtype=np.uint64)


def _refuse_id_clashes(columns: CorpusColumns) -> None:
    """Two texts under one id would score one's queries against the other (the reader lets
    no such corpus through: pipeline.corpus.doc_ids), so they are refused here too; a twin
    (the same text under its content-hash id) keeps the first row, which holds the same
    vector. Only rows whose id digests meet are compared, each with the first row of its
    id among them (a digest two ids share keeps them apart)."""
    lookup = columns.rows.lookup
    same = lookup.sorted[1:] == lookup.sorted[:-1]
    firsts: dict[tuple[int, str], int] = {}
    # In digest order; rows ascend within a digest (the sort is stable).
    for at in np.flatnonzero(np.r_[same, False] | np.r_[False, same]):
        row = int(lookup.order[at])
        doc_id = columns.doc_ids[row]
        first = firsts.setdefault((int(lookup.sorted[at]), doc_id), row)
        if columns.texts[first] != columns.texts[row]:
            raise ValueError(
                f"duplicate document id {doc_id!r} for two texts (rows {first} and {row})"
            )
