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
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.config.generator import StageSampling
from pipeline.dataset.writer import atomic_path
from pipeline.generation.backends.base import Generator, OnDone, Request, Result

SEGMENT = "seg-{}{:06d}.jsonl"


def result_key(request: Request, sampling: StageSampling, model: str, seed: int) -> str:
    """What determines a result (labels and the sample number only where a request has
    them, so the keys of one-sample generation requests stay those of earlier caches)."""
    parts = [request.messages, request.schema, sampling.model_dump(), model, seed]
    parts += [list(request.labels)] if request.labels else []
    blob = json.dumps(parts + ([request.sample] if request.sample else []), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    """The results stored in a folder of segments (every writer's), loaded at open; this
    one's own segments are named with `writer` (empty: the one writer of a local run)."""

    def __init__(self, folder: Path, writer: str = "") -> None:
        self.folder = folder
        self.writer = f"{writer}-" if writer else ""
        folder.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Result] = {}
        self.own = re.compile(rf"seg-{re.escape(self.writer)}\d{{6}}\.jsonl")
        self.loaded: set[str] = set()
        self.segments = 0  # this writer's, so its next segment never replaces one
        self.dropped = 0  # lines that did not parse: their results are generated again
        self.refresh()

    def refresh(self) -> None:
        """Load the segments other writers stored since the last look (a Ray job's actors
        share what they generated through the folder)."""
        for segment in sorted(self.folder.glob("seg-*.jsonl")):
            if segment.name in self.loaded:
                continue
            self.loaded.add(segment.name)
            self.segments += bool(self.own.fullmatch(segment.name))
            for line in segment.read_bytes().split(b"\n"):
                if line.strip():
                    self._load(line)

    def _load(self, line: bytes) -> None:
        try:
            row = json.loads(line.decode("utf-8"))
            key = row.pop("key")
            self.results[key] = Result(**row)
        except (ValueError, TypeError, KeyError, AttributeError):
            self.dropped += 1

    def add(self, keys: list[str], results: list[Result]) -> None:
        """Persist one call's results as a new segment, atomically."""
        path = self.folder / SEGMENT.format(self.writer, self.segments)
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
            for key, result in zip(keys, results, strict=True):
                handle.write(json.dumps({"key": key, **asdict(result)}, ensure_ascii=False))
                handle.write("\n")
        self.segments += 1
        self.loaded.add(path.name)
        self.results.update(zip(keys, results, strict=True))


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
        missing = [i for i, key in enumerate(keys) if key not in self.cache.results]
        if missing:
            self.cache.refresh()
            missing = [i for i, key in enumerate(keys) if key not in self.cache.results]
        self.cached += len(keys) - len(missing)
        if on_done is not None and len(keys) > len(missing):
            on_done(len(keys) - len(missing))
        if missing:
            fresh = self.engine().generate([requests[i] for i in missing], sampling, on_done)
            self.generated += len(missing)
            stored = [(keys[i], r) for i, r in zip(missing, fresh, strict=True) if r.error is None]
            if stored:
                self.cache.add([k for k, _ in stored], [r for _, r in stored])
            found = dict(zip(missing, fresh, strict=True))
            return [found[i] if i in found else self.cache.results[k] for i, k in enumerate(keys)]
        return [self.cache.results[k] for k in keys]
