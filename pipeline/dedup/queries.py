"""Query dedup for a job: exact, near (MinHash-LSH), semantic (embedding cosine), against
this run's published queries and every earlier version's.

It is the last check of a job (pipeline.quality.chain), so what it keeps is what the version
publishes: a query is only ever rejected as a duplicate of a pair that exists, and a pair
a later check would drop never blocks its duplicates, in this run or a refresh.

Each version saves its published queries' normalized text, document ids and vectors in
`state/` with the settings that made them; a later run rebuilds its indexes from every
earlier version's state, less the documents a later version superseded (changed or
deleted: pipeline.dataset.refresh), whose pairs no longer count. Vectors from another
embedder are not comparable, so that is an error, not a silent miss.
"""

import json
from collections.abc import Set
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.errors import UserError
from pipeline.config.job import DedupConfig
from pipeline.corpus.nearest import EXACT_BELOW
from pipeline.dataset.records import Candidate, Reject
from pipeline.dataset.refresh import superseded_later
from pipeline.dedup.kept import KeptQueries
from pipeline.dedup.near import NearDuplicates
from pipeline.dedup.semantic import SemanticDuplicates
from pipeline.dedup.text import normalize, text_key

STATE = "state"
SETTINGS_FILE = "dedup.json"
QUERIES_FILE = "queries.parquet"
FORMAT = 1


class QueryDedup:
    """Rejects repeated queries; writes the kept (published) ones out for the version's
    state (to a temp file in `spill`, the system's temp folder without it; to named files
    in `spill` with `named`: pipeline.dedup.kept)."""

    def __init__(
        self,
        config: DedupConfig,
        embedder: str | None,
        dimension: int,
        exact_below: int = EXACT_BELOW,
        spill: Path | None = None,
        named: bool = False,
    ) -> None:
        self.config = config
        self.settings = {"format": FORMAT, "embedder": embedder, "dimension": dimension}
        self.exact: dict[str, str] = {}
        self.near = (
            NearDuplicates(config.near.threshold, config.near.num_perm, config.near.shingle)
            if config.near.enabled
            else None
        )
        self.semantic = (
            SemanticDuplicates(config.semantic.threshold, dimension, exact_below)
            if config.semantic.enabled
            else None
        )
        self.kept = KeptQueries(dimension, spill, named)  # this run's, for the version's state

    def load_versions(self, versions: list[Path], superseded: Set[str] = frozenset()) -> int:
        """Index the published queries of earlier versions, except those of documents a
        later version, or this run (`superseded`), retired; returns how many were loaded."""
        loaded = 0
        retired = superseded_later(versions)
        for version in versions:
            texts, docs, vectors = read_published(version, self.settings, self.semantic is not None)
            gone = retired[version] | superseded
            rows = [i for i, doc in enumerate(docs) if doc not in gone]
            keys = [f"{version.name}:{i}" for i in rows]
            self.exact.update((text_key(texts[i]), k) for i, k in zip(rows, keys, strict=True))
            if self.near is not None:
                self.near.add([texts[i] for i in rows], keys)
            if self.semantic is not None and vectors is not None and rows:
                self.semantic.add(vectors[rows], keys)
            loaded += len(rows)
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
                self.kept.add(texts[i], candidates[i].doc.doc_id, candidates[i].vector)
        return verdicts

    def save(self, version: Path) -> None:
        """Write the kept queries and the settings into the version's state folder."""
        folder = version / STATE
        folder.mkdir(parents=True, exist_ok=True)
        self.kept.save(folder / QUERIES_FILE)
        (folder / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=2) + "\n")


def _stack(candidates: list[Candidate], rows: list[int]) -> np.ndarray:
    return np.stack([candidates[i].vector for i in rows]).astype(np.float32)


def read_state(
    version: Path, settings: dict[str, Any], need_vectors: bool
) -> tuple[list[str], np.ndarray | None]:
    """(normalized published queries, their vectors or None) of an earlier version."""
    texts, _, vectors = read_published(version, settings, need_vectors)
    return texts, vectors


def read_published(
    version: Path, settings: dict[str, Any], need_vectors: bool
) -> tuple[list[str], list[str | None], np.ndarray | None]:
    """(normalized published queries, their doc_ids, their vectors or None) of an earlier
    version. Versions made before dedup state existed give their data's queries and no
    vectors; states without doc_ids (older ones, which could hold queries a later check
    dropped) give their data's queries with the state's vector of each."""
    folder = version / STATE
    if not (folder / SETTINGS_FILE).is_file():
        texts, docs = _data_queries(version)
        return texts, docs, None
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
    texts = table.column("query_norm").to_pylist()
    if "doc_id" in table.column_names:
        return texts, table.column("doc_id").to_pylist(), vectors
    published, docs = _data_queries(version)
    row = {text: i for i, text in enumerate(texts)}
    if vectors is None or any(text not in row for text in published):
        return published, docs, None
    return published, docs, vectors[[row[text] for text in published]]


def _data_queries(version: Path) -> tuple[list[str], list[str | None]]:
    table = pq.read_table(version / "data", columns=["query", "doc_id"])
    texts = [normalize(q) for q in table.column("query").to_pylist()]
    return texts, table.column("doc_id").to_pylist()
