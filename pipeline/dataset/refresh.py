"""Which documents a dataset has already covered, and which of its pairs are out of date.

Every version records the content key (a hash of id and text) of each document it read in
`state/documents.parquet`. A refresh reads the corpus and keeps only documents whose key no
earlier version holds: a new id, or an old id with changed text, so a growing corpus costs
only its growth.

Since a refresh reads the whole corpus, it also knows which documents earlier versions
covered that are now changed (same id, another text) or gone; it records their ids in
`state/superseded.parquet`. A pair of version i is superseded when a later version j > i
of the same dataset lists its doc_id: its text is not the corpus's any more, so readers of
several versions (the trainer's `versions: all`, `embsynth export --all`) and the query
dedup leave it out, while the changed document's new pairs in version j stay.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.writer import VERSION_DIR, write_atomic

DOCUMENTS = Path("state") / "documents.parquet"
SUPERSEDED = Path("state") / "superseded.parquet"


@dataclass
class Superseded:
    """Ids of documents earlier versions covered whose pairs a version retires."""

    changed: set[str] = field(default_factory=set)  # same id, another text in the corpus
    deleted: set[str] = field(default_factory=set)  # no longer in the corpus

    @property
    def ids(self) -> set[str]:
        return self.changed | self.deleted

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)

    def counts(self) -> dict[str, int]:
        """The manifest's `superseded`: how many ids of each kind."""
        return {"changed": len(self.changed), "deleted": len(self.deleted)}


def read_superseded(version: Path) -> Superseded:
    """What `version` supersedes (nothing for versions made before it was recorded)."""
    path = version / SUPERSEDED
    found = Superseded()
    if path.is_file():
        table = pq.read_table(path, columns=["doc_id", "reason"]).to_pylist()
        for row in table:
            (found.changed if row["reason"] == "changed" else found.deleted).add(row["doc_id"])
    return found


def superseded_later(versions: Iterable[Path]) -> dict[Path, set[str]]:
    """For each version, the doc_ids whose pairs in it are superseded: those a later version
    of the same dataset (the same parent folder) among `versions` lists."""
    datasets: dict[Path, list[Path]] = defaultdict(list)
    for version in dict.fromkeys(versions):
        datasets[version.resolve().parent].append(version)
    retired: dict[Path, set[str]] = {}
    for members in datasets.values():
        members.sort(key=_number)
        later: set[str] = set()
        for version in reversed(members):
            retired[version] = set(later)
            later |= read_superseded(version).ids
    return retired


def _number(version: Path) -> int:
    match = VERSION_DIR.match(version.name)
    return int(match.group(1)) if match else -1


def live_documents(versions: list[Path]) -> dict[str, set[str]]:
    """doc_id -> content keys of the documents the versions read, less those a later
    version superseded (a deleted document that comes back is new again)."""
    retired = superseded_later(versions)
    live: dict[str, set[str]] = defaultdict(set)
    for version in versions:
        path = version / DOCUMENTS
        if not path.is_file():
            continue
        for row in pq.read_table(path, columns=["doc_id", "key"]).to_pylist():
            if row["doc_id"] not in retired[version]:
                live[row["doc_id"]].add(row["key"])
    return dict(live)


def covered(versions: list[Path]) -> set[str]:
    """Keys of every document the given versions read and no later one superseded."""
    return {key for keys in live_documents(versions).values() for key in keys}


def find_superseded(keys: list[tuple[str, str]], whole: bool, versions: list[Path]) -> Superseded:
    """Documents the earlier versions cover whose text the corpus changed or dropped, from
    the corpus's (doc_id, key) pairs (pipeline.corpus.survey).

    Unless the corpus was read `whole` (a `limit` reads only the first documents), nothing
    is known to be deleted: only changes are found then. A document now empty or over
    `input.max_chars` is no longer read, so it counts as deleted (its old text trains no
    more)."""
    live = live_documents(versions)
    found = Superseded()
    present: set[str] = set()
    for doc_id, key in keys:
        present.add(doc_id)
        if doc_id in live and key not in live[doc_id]:
            found.changed.add(doc_id)
    if whole:
        found.deleted = set(live) - present
    return found


def write_superseded(version: Path, superseded: Superseded) -> None:
    """Record what this version supersedes (an empty file when nothing)."""
    rows = [(i, "changed") for i in sorted(superseded.changed)]
    rows += [(i, "deleted") for i in sorted(superseded.deleted)]
    table = pa.table(
        {"doc_id": pa.array([r[0] for r in rows], pa.string()),
         "reason": pa.array([r[1] for r in rows], pa.string())}
    )  # fmt: skip
    (version / SUPERSEDED).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(table, version / SUPERSEDED)


def write_covered(version: Path, covered: list[tuple[str, str]]) -> None:
    """Record the documents this version read: (doc_id, content key) of each."""
    (version / DOCUMENTS).parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"doc_id": pa.array([i for i, _ in covered], pa.string()),
         "key": pa.array([key for _, key in covered], pa.string())}
    )  # fmt: skip
    write_atomic(table, version / DOCUMENTS)
