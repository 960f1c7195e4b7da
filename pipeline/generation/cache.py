"""An append-only store of generation results, and the generator that consults it first.

Each generate call's results are written as one segment file (`seg-NNNNNN.jsonl`, or
`seg-WRITER-NNNNNN.jsonl` for one of several writers sharing the folder: the engine actors of
a Ray job) under a temp name, fsynced and renamed, so a `kill -9` at any moment leaves whole
segments and at most a stray temp file, never a torn one; no two writers name the same file.
A result is keyed by everything that determines it: rendered messages, schema, sampling,
model and seed.

Lines are split on b"\n" alone: JSON escapes that byte inside strings, but not U+2028,
U+0085 or the other characters `str.splitlines` also breaks on, which documents carry. A
line that does not parse (a disk that filled up, a file damaged by hand) costs only its
own result, which is generated again; it never makes the cache unreadable.

Only where each result lies (its segment and byte offset) is held in memory, about a tenth of
the result itself: a long run's cache grows on disk, not in the process, and a result is
read back when a request asks for it again (a resume, a closed-loop variant, a peer's).
"""

import hashlib
import json
import re
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.config.generator import StageSampling
from pipeline.dataset.writer import atomic_path
from pipeline.generation.backends.base import Generator, OnDone, Request, Result

SEGMENT = "seg-{}{:06d}.jsonl"
OFFSET_BITS = 40  # a segment up to 1 TiB
OFFSET_MASK = (1 << OFFSET_BITS) - 1


def result_key(request: Request, sampling: StageSampling, model: str, seed: int) -> str:
    """What determines a result (labels and the sample number only where a request has
    them, so the keys of one-sample generation requests stay those of earlier caches)."""
    parts = [request.messages, request.schema, sampling.model_dump(), model, seed]
    parts += [list(request.labels)] if request.labels else []
    blob = json.dumps(parts + ([request.sample] if request.sample else []), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    """Where each result stored in a folder of segments (every writer's) lies, indexed at
    open; this one's own segments are named with `writer` (empty: the one writer of a local
    run)."""

    def __init__(self, folder: Path, writer: str = "") -> None:
        self.folder = folder
        self.writer = f"{writer}-" if writer else ""
        folder.mkdir(parents=True, exist_ok=True)
        self.where: dict[str, int] = {}  # key -> segment number << OFFSET_BITS | byte offset
        self.paths: list[Path] = []  # segment by number
        self.own = re.compile(rf"seg-{re.escape(self.writer)}\d{{6}}\.jsonl")
        self.loaded: set[str] = set()
        self.segments = 0  # this writer's, so its next segment never replaces one
        self.dropped = 0  # lines that did not parse: their results are generated again
        self.refresh()

    def __contains__(self, key: str) -> bool:
        return key in self.where

    def __len__(self) -> int:
        return len(self.where)

    def keys(self) -> list[str]:
        return list(self.where)

    def refresh(self) -> None:
        """Index the segments other writers stored since the last look (a Ray job's actors
        share what they generated through the folder)."""
        for segment in sorted(self.folder.glob("seg-*.jsonl")):
            if segment.name in self.loaded:
                continue
            self.loaded.add(segment.name)
            self.segments += bool(self.own.fullmatch(segment.name))
            number, offset = len(self.paths), 0
            self.paths.append(segment)
            for line in segment.read_bytes().split(b"\n"):
                parsed = _parse(line) if line.strip() else None
                if parsed is not None:
                    self.where[parsed[0]] = number << OFFSET_BITS | offset
                elif line.strip():
                    self.dropped += 1
                offset += len(line) + 1

    def read(self, keys: list[str]) -> list[Result]:
        """The stored results of `keys` (each must be in the cache), read from their
        segments in file order."""
        places = [self.where[key] for key in keys]
        found: dict[int, Result] = {}
        with ExitStack() as stack:
            handles: dict[int, BinaryIO] = {}
            for place in sorted(set(places)):
                number = place >> OFFSET_BITS
                if number not in handles:
                    handles[number] = stack.enter_context(self.paths[number].open("rb"))
                handles[number].seek(place & OFFSET_MASK)
                parsed = _parse(handles[number].readline().rstrip(b"\n"))
                if parsed is None:
                    raise RuntimeError(f"{self.paths[number]} changed after it was indexed")
                found[place] = parsed[1]
        return [found[place] for place in places]

    def add(self, keys: list[str], results: list[Result]) -> None:
        """Persist one call's results as a new segment, atomically."""
        path = self.folder / SEGMENT.format(self.writer, self.segments)
        number, offset, places = len(self.paths), 0, []
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            for key, result in zip(keys, results, strict=True):
                row = json.dumps({"key": key, **asdict(result)}, ensure_ascii=False)
                line = row.encode("utf-8") + b"\n"
                handle.write(line)
                places.append(number << OFFSET_BITS | offset)
                offset += len(line)
        self.segments += 1
        self.loaded.add(path.name)
        self.paths.append(path)
        self.where.update(zip(keys, places, strict=True))


def _parse(line: bytes) -> tuple[str, Result] | None:
    """(key, result) of a stored line, or None where it does not parse."""
    try:
        row = json.loads(line.decode("utf-8"))
        key = row.pop("key")
        return key, Result(**row)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class CachingGenerator:
    """Answers from the cache, generates only what it lacks, stores what it generated.

    The engine is opened on the first miss, so a run that the cache answers entirely (a
    resume after the last batch, a closed-loop variant after the first) never loads a model.
    Results of a failed request (`error` set) are not stored: a later run retries them.
    """

    def __init__(
        self,
        cache: RequestCache,
        model: str,
        seed: int,
        inner: Generator | None = None,
        opener: Callable[[], Generator] | None = None,
    ) -> None:
        self.cache = cache
        self.model = model
        self.seed = seed
        self.inner = inner
        self.opener = opener
        self.generated = 0
        self.cached = 0

    @property
    def settings(self) -> Any:
        return self.inner.settings if self.inner is not None else None

    def engine(self) -> Generator:
        if self.inner is None:
            assert self.opener is not None
            self.inner = self.opener()
        return self.inner

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        keys = [result_key(r, sampling, self.model, self.seed) for r in requests]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            self.cache.refresh()
            missing = [i for i, key in enumerate(keys) if key not in self.cache]
        self.cached += len(keys) - len(missing)
        if on_done is not None and len(keys) > len(missing):
            on_done(len(keys) - len(missing))
        found: dict[int, Result] = {}
        if missing:
            fresh = self.engine().generate([requests[i] for i in missing], sampling, on_done)
            self.generated += len(missing)
            stored = [(keys[i], r) for i, r in zip(missing, fresh, strict=True) if r.error is None]
            if stored:
                self.cache.add([k for k, _ in stored], [r for _, r in stored])
            found = dict(zip(missing, fresh, strict=True))
        hits = [i for i in range(len(keys)) if i not in found]
        found.update(zip(hits, self.cache.read([keys[i] for i in hits]), strict=True))
        return [found[i] for i in range(len(keys))]
