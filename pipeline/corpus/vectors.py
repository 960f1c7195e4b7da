"""The corpus vectors a dataset keeps between runs: each document's vector stored once per
content key and embedder, in a memory-mapped file in the dataset's `state/`, so that a
rerun, a resumed run or a refresh embeds only the documents no earlier run embedded (new
ids, changed texts) instead of the whole corpus again.

Layout (`DATASET/state/corpus-vectors/`): `vectors.f32`, rows of float32 appended in the
order they were embedded; `keys.txt`, the content key of each row, one per line; and
`meta.json`, the embedder the rows came from and their dimension; and `state-COUNT-DIGEST/`,
what is derived from the last corpus state: the graph a corpus large enough is searched
through (`graph.usearch`, pipeline.corpus.nearest), the fused teacher's BM25 indexes
(`bm25-STEMMER/`, pipeline.teacher.lexical), the ids and texts (`texts.arrow`,
pipeline.corpus.columns) and, for a corpus not in the order its documents were embedded
(a changed document's new vector is at the file's end), its vectors in its own order. The
rows are written and synced before the key list is replaced (atomically), so a kill between
the two leaves rows no key names, which the next write cuts off: a key never points at a
vector not written.

A job whose embedder is not the one the vectors came from (its backend or any file of its
folder changed: weights, pooling, Dense layers, max length) is refused with one line before
anything is written, as the dataset's query dedup state is (pipeline.dedup.queries): its
vectors would be compared with the stored ones.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from pipeline.config.errors import UserError
from pipeline.corpus.nearest import BASE, GRAPH
from pipeline.dataset.manifest import write_json_atomic
from pipeline.dataset.writer import atomic_path

FOLDER = Path("state") / "corpus-vectors"
VECTORS, KEYS, META = "vectors.f32", "keys.txt", "meta.json"
MIB = 1 << 20
ORDER_CHUNK = 65_536  # rows copied at a time into a corpus state's own order
SAME = ("backend", "fingerprint", "dimension")  # what must match; the path may move


def embedder_identity(folder: Path, backend: str) -> dict[str, str]:
    """What must match for stored vectors to be reused: the backend and a fingerprint of
    every file of the embedder's folder (configs whole; a large weight file by its size and
    its first and last MiB, which a retrained model changes). The folder's path is kept
    for the message only, so a copied dataset or a rebuilt environment still matches."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder)}\0{size}\0".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(MIB))
            if size > 2 * MIB:
                handle.seek(-MIB, os.SEEK_END)
                digest.update(handle.read(MIB))
    return {"embedder": str(folder.resolve()), "backend": backend,
            "fingerprint": digest.hexdigest()[:16]}  # fmt: skip


class VectorStore:
    """The stored vectors of one dataset, for one embedder (see the module)."""

    def __init__(self, root: Path, identity: dict[str, str], dimension: int) -> None:
        self.folder = root / FOLDER
        self.meta = identity | {"dimension": dimension}
        self.dimension = dimension
        meta_path = self.folder / META
        if meta_path.is_file():
            made = json.loads(meta_path.read_text(encoding="utf-8"))
            if any(made.get(key) != self.meta[key] for key in SAME):
                raise UserError(
                    f"{self.folder}: corpus vectors were made with embedder {made['embedder']} "
                    f"({made['backend']}, {made['dimension']} dims, files "
                    f"{made['fingerprint']}), this job uses {identity['embedder']} "
                    f"({identity['backend']}, {dimension} dims, files "
                    f"{identity['fingerprint']}); use the same embedder, another dataset "
                    "name, or delete that folder to embed the corpus again"
                )
        keys_path = self.folder / KEYS
        keys = keys_path.read_text(encoding="utf-8").split("\n")[:-1] if keys_path.is_file() else []
        self.keys = keys
        self.rows = {key: row for row, key in enumerate(keys)}

    def missing(self, keys: list[str]) -> list[str]:
        """The keys without a stored vector, each once, in their order."""
        return list(dict.fromkeys(k for k in keys if k not in self.rows))

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store the vectors of `keys` (new keys only): rows first, then the key list."""
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / VECTORS
        with open(path, "ab") as out:
            out.truncate(len(self.keys) * self.dimension * 4)  # rows a kill left unnamed
            out.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
            out.flush()
            os.fsync(out.fileno())
        write_json_atomic(self.meta, self.folder / META)
        self.keys = [*self.keys, *keys]
        self.rows |= {key: row for row, key in enumerate(keys, start=len(self.rows))}
        with atomic_path(self.folder / KEYS) as tmp:
            tmp.write_text("".join(f"{key}\n" for key in self.keys), encoding="utf-8")

    def corpus_state(self, keys: list[str]) -> Path:
        """The folder of what is derived from the corpus `keys` (in their order: a row of the
        graph is a position in it), `state-COUNT-DIGEST/`: its nearest-neighbour graph
        (pipeline.corpus.nearest), BM25. The graph of the longest earlier state whose documents
        are the first of these (a corpus that grew at its end) is moved in as `base.usearch`,
        for the graph to grow from; the folders of other states are deleted, so one is kept."""
        state = self.folder / f"state-{len(keys)}-{_digest(keys)}"
        base = state / BASE if (state / BASE).is_file() else None
        earlier = sorted(self.folder.glob("state-*"), key=_count, reverse=True)
        for old in (folder for folder in earlier if folder != state):
            count = _count(old)
            prefix = 0 < count < len(keys) and old.name == f"state-{count}-{_digest(keys[:count])}"
            if base is None and prefix and (old / GRAPH).is_file():
                state.mkdir(parents=True, exist_ok=True)
                base = (old / GRAPH).rename(state / BASE)
            shutil.rmtree(old, ignore_errors=True)
        return state

    def vectors(self, keys: list[str], state: Path | None = None) -> np.ndarray:
        """The stored vectors of `keys`, in their order (every key must be stored), memory-
        mapped: a view of the file where they are its first rows in its order (a corpus
        read as it was embedded, grown at its end), else the corpus state's own copy in
        that order (`state/vectors.f32`, written once per state in chunks); a copy in
        memory only without a state."""
        if not keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        table = self._table(self.folder / VECTORS, len(self.keys))
        rows = np.fromiter((self.rows[key] for key in keys), dtype=np.int64, count=len(keys))
        if rows[0] == 0 and (np.diff(rows) == 1).all():
            return table[: len(keys)]  # the file's own order: paged in as read, not copied
        if state is None:
            return np.asarray(table[rows])
        path = state / VECTORS
        if not path.is_file():
            state.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as out:
                for start in range(0, len(rows), ORDER_CHUNK):
                    out.write(np.ascontiguousarray(table[rows[start : start + ORDER_CHUNK]]))
        return self._table(path, len(keys))

    def _table(self, path: Path, count: int) -> np.ndarray:
        return np.memmap(path, dtype=np.float32, mode="r", shape=(count, self.dimension))


def _count(folder: Path) -> int:
    """The document count in a state folder's name (0 for a name not of that form)."""
    count = folder.name.removeprefix("state-").partition("-")[0]
    return int(count) if count.isdigit() else 0


def _digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
