"""Write a dataset version: sharded Parquet for pairs and rejects, each shard atomically.

A shard is written to a hidden temp file and renamed into place, so a reader never sees a
partial shard. A version is built in a hidden staging folder (`.vNNNN.partial`); the
manifest is written last and only then is the folder renamed to `vNNNN`, so a folder named
like a version is always complete, and a crashed run leaves only a `.partial` folder.
"""

import os
import re
import shutil
from collections.abc import Iterator, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config.errors import UserError

VERSION_DIR = re.compile(r"^v(\d{4,})$")
STAGING_DIR = re.compile(r"^\.v(\d{4,})\.partial$")


def versions(root: Path) -> list[Path]:
    """Complete version folders of a dataset, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and VERSION_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(p.name[1:]))


def latest_version(path: Path) -> Path:
    """`path` itself if it is a finished version, else the newest version inside it (a
    dataset root such as out/demo), so a scheduled retrain picks up the latest refresh."""
    if (path / "manifest.json").is_file():
        return path
    found = versions(path)
    if found:
        return found[-1]
    raise UserError(f"{path}: not a finished dataset version (no manifest.json) nor a dataset")


def chosen_versions(path: Path, which: str) -> list[Path]:
    """`path` itself if it is a finished version; for a dataset folder its newest version,
    or with `which="all"` every finished one (a cron retrain over all refreshes)."""
    if which == "all" and not (path / "manifest.json").is_file():
        found = versions(path)
        if found:
            return found
    return [latest_version(path)]


def data_shards(version: Path) -> list[Path]:
    """A finished version's pair shards, in order; none is an error."""
    shards = sorted((version / "data").glob("*.parquet"))
    if not shards:
        raise UserError(f"{version}: no data/*.parquet shards")
    return shards


def new_version(root: Path) -> tuple[Path, Path]:
    """Create the staging folder of the next version; return (staging, final) paths.

    Numbers also skip past abandoned staging folders, so they are never reused.
    """
    root.mkdir(parents=True, exist_ok=True)
    numbers = [
        int(match.group(1))
        for p in root.iterdir()
        if (match := VERSION_DIR.match(p.name) or STAGING_DIR.match(p.name))
    ]
    number = max(numbers, default=0) + 1
    while True:  # two runs starting at once: the loser of mkdir takes the next number
        staging = root / f".v{number:04d}.partial"
        try:
            staging.mkdir()
        except FileExistsError:
            number += 1
            continue
        return staging, root / f"v{number:04d}"


def unfinished_version(root: Path) -> tuple[Path, Path] | None:
    """The newest staging folder, if it is newer than every complete version: the run that
    a killed job left behind, which the next run resumes (staging, final)."""
    if not root.is_dir():
        return None
    staged = {
        int(match.group(1)): p
        for p in root.iterdir()
        if p.is_dir() and (match := STAGING_DIR.match(p.name))
    }
    done = [int(p.name[1:]) for p in versions(root)]
    if not staged or max(staged) < max(done, default=0):
        return None
    number = max(staged)
    return staged[number], root / f"v{number:04d}"


# What a resumed staging folder keeps: the request cache (the expensive part) and the logs.
KEPT_ON_RESUME = ("cache", "logs")


def reset_for_resume(staging: Path, keep: Set[str] = frozenset()) -> None:
    """Clear what an interrupted run wrote, except its request cache, its logs and the
    entries `keep` names (paths relative to `staging`: what a checkpoint goes on from,
    pipeline.run.checkpoint): everything else is rebuilt from the cache, in the same order,
    as an uninterrupted run builds it."""
    for entry in staging.iterdir():
        if entry.name in KEPT_ON_RESUME or entry.name in keep:
            continue
        inside = {k.split("/", 1)[1] for k in keep if k.startswith(f"{entry.name}/")}
        if entry.is_dir() and inside:
            reset_for_resume(entry, inside)
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def publish(staging: Path, final: Path) -> None:
    """Make a finished version visible under its final name in one rename."""
    os.replace(staging, final)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path to write `path`'s content to; fsynced and renamed into place on success,
    removed on failure."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temp name, fsync, then rename it into place."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class ShardWriter:
    """Buffers rows of one schema and writes `part-NNNNN.parquet` shards of `shard_size`."""

    def __init__(self, folder: Path, schema: pa.Schema, shard_size: int) -> None:
        self.folder = folder
        self.schema = schema
        self.shard_size = shard_size
        self.buffer: list[dict[str, Any]] = []
        self.shards: list[dict[str, Any]] = []
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def rows(self) -> int:
        """Rows written so far, buffered ones included."""
        return sum(s["rows"] for s in self.shards) + len(self.buffer)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows, writing every full shard."""
        self.buffer.extend(rows)
        while len(self.buffer) >= self.shard_size:
            self._flush(self.buffer[: self.shard_size])
            self.buffer = self.buffer[self.shard_size :]

    def close(self) -> list[dict[str, Any]]:
        """Write the last partial shard; return the shard list for the manifest."""
        if self.buffer or not self.shards:
            self._flush(self.buffer)
            self.buffer = []
        return self.shards

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        path = self.folder / f"part-{len(self.shards):05d}.parquet"
        write_atomic(pa.Table.from_pylist(rows, schema=self.schema), path)
        relative = f"{self.folder.name}/{path.name}"
        self.shards.append({"path": relative, "rows": len(rows), "bytes": path.stat().st_size})
