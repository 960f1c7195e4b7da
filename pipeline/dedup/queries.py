"""Query dedup for a job: exact, near (MinHash-LSH), semantic (embedding cosine), against
this run's kept queries and every earlier version of the dataset.

Each version saves its kept queries' normalized text and vectors in `state/` with the
settings that made them; a later run rebuilds its indexes from every earlier version's
state. Vectors from another embedder are not comparable, so that is an error, not a
silent miss.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import DedupConfig
from pipeline.dedup.near import NearDuplicates
from pipeline.dedup.semantic import SemanticDuplicates
from pipeline.dedup.text import normalize, text_key
from pipeline.errors import UserError
from pipeline.records import Candidate, Reject
from pipeline.writer import write_atomic

STATE = "state"
SETTINGS_FILE = "dedup.json"
QUERIES_FILE = "queries.parquet"
FORMAT = 1


class QueryDedup:
    """Rejects repeated queries; remembers the kept ones for the version's state."""

    def __init__(self, config: DedupConfig, embedder: str | None, dimension: int) -> None:
        self.config = config
        self.settings = {"format": FORMAT, "embedder": embedder, "dimension": dimension}
        self.exact: dict[str, str] = {}
        self.near = (
            NearDuplicates(config.near.threshold, config.near.num_perm, config.near.shingle)
            if config.near.enabled
            else None
        )
        self.semantic = (
            SemanticDuplicates(config.semantic.threshold, dimension)
            if config.semantic.enabled
            else None
        )
        self.kept_text: list[str] = []
        self.kept_vectors: list[np.ndarray] = []

    def load_versions(self, versions: list[Path]) -> int:
        """Index the kept queries of earlier versions; returns how many were loaded."""
        loaded = 0
        for version in versions:
            texts, vectors = read_state(version, self.settings, self.semantic is not None)
            keys = [f"{version.name}:{i}" for i in range(len(texts))]
            self.exact.update((text_key(t), k) for t, k in zip(texts, keys, strict=True))
            if self.near is not None:
                self.near.add(texts, keys)
            if self.semantic is not None and vectors is not None:
                self.semantic.add(vectors, keys)
            loaded += len(texts)
        return loaded

    def check(self, candidates: list[Candidate]) -> list[Reject | None]:
        """One verdict per candidate, in order; the first of each duplicate group stays."""
        verdicts: list[Reject | None] = [None] * len(candidates)
        texts = [normalize(c.query or "") for c in candidates]
        keys = [c.doc.doc_id for c in candidates]

        def reject(i: int, reason: str, detail: str, score: float | None = None) -> None:
            c = candidates[i]
            verdicts[i] = Reject(c.doc.doc_id, c.task, "dedup", reason, detail, c.query, score)

        if self.config.exact:
            for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
                digest = text_key(text)
                if digest in self.exact:
                    reject(i, "exact_duplicate", f"same text as {self.exact[digest]}")
                else:
                    self.exact[digest] = key
        stages = [
            ("near_duplicate", self.near, lambda idx: [texts[i] for i in idx]),
            ("semantic_duplicate", self.semantic, lambda idx: _stack(candidates, idx)),
        ]
        for reason, index, inputs in stages:
            if index is None:
                continue
            live = [i for i, v in enumerate(verdicts) if v is None]
            if not live:
                break
            found = index.check(inputs(live), [keys[i] for i in live])
            for i, match in zip(live, found, strict=True):
                if match is not None:
                    reject(i, reason, f"{match[1]:.3f} similar to {match[0]}", match[1])
        for i, verdict in enumerate(verdicts):
            if verdict is None:
                self.kept_text.append(texts[i])
                if candidates[i].vector is not None:
                    self.kept_vectors.append(candidates[i].vector)
        return verdicts

    def save(self, version: Path) -> None:
        """Write the kept queries and the settings into the version's state folder."""
        folder = version / STATE
        folder.mkdir(parents=True, exist_ok=True)
        columns: dict[str, Any] = {"query_norm": self.kept_text}
        if self.kept_vectors and len(self.kept_vectors) == len(self.kept_text):
            flat = np.stack(self.kept_vectors).astype(np.float32)
            columns["vector"] = pa.FixedSizeListArray.from_arrays(
                pa.array(flat.reshape(-1)), flat.shape[1]
            )
        write_atomic(pa.table(columns), folder / QUERIES_FILE)
        (folder / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=2) + "\n")


def _stack(candidates: list[Candidate], rows: list[int]) -> np.ndarray:
    return np.stack([candidates[i].vector for i in rows]).astype(np.float32)


def read_state(
    version: Path, settings: dict[str, Any], need_vectors: bool
) -> tuple[list[str], np.ndarray | None]:
    """(normalized kept queries, their vectors or None) of an earlier version; versions
    made before dedup state existed give their data's queries and no vectors."""
    folder = version / STATE
    if not (folder / SETTINGS_FILE).is_file():
        table = pq.read_table(version / "data", columns=["query"])
        return [normalize(q) for q in table.column("query").to_pylist()], None
    try:
        saved = json.loads((folder / SETTINGS_FILE).read_text())
        table = pq.read_table(folder / QUERIES_FILE)
    except (OSError, ValueError, pa.ArrowInvalid) as exc:
        raise UserError(f"{folder}: unreadable dedup state ({exc})") from exc
    if saved.get("format") != FORMAT:
        raise UserError(f"{folder}: dedup state format {saved.get('format')} is not {FORMAT}")
    made_with = (saved.get("embedder"), saved.get("dimension"))
    if (
        need_vectors
        and made_with[0] is not None
        and made_with
        != (
            settings["embedder"],
            settings["dimension"],
        )
    ):
        raise UserError(
            f"{folder}: dedup state was made with embedder {made_with[0]} ({made_with[1]} "
            f"dims), this job uses {settings['embedder']} ({settings['dimension']} dims); "
            "use the same embedder or another dataset name"
        )
    vectors = None
    if "vector" in table.column_names:
        flat = table.column("vector").combine_chunks()
        vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False)).reshape(len(table), -1)
    return table.column("query_norm").to_pylist(), vectors
