"""A generator that records every result of a real backend to a JSONL file and can replay
them later, keyed by what determines a result (rendered messages, schema, sampling).

Ablations use it: the closed-loop benchmark generates once and builds every variant from
the same generations, so variants differ only in their filter, dedup and mining settings.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

from pipeline.config import StageSampling
from pipeline.generate.backend import OnDone, Request, Result


def request_key(request: Request, sampling: StageSampling) -> str:
    """What identifies a result: the rendered messages, the schema and the sampling."""
    blob = json.dumps([request.messages, request.schema, sampling.model_dump()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class Recording:
    """Records `inner`'s results to `path`; without `inner`, replays what `path` holds
    (a request never recorded is an error, not a silent new generation)."""

    def __init__(self, path: Path, inner: Any = None) -> None:
        self.path = path
        self.inner = inner
        self.model = inner.model if inner else "replay"
        self.settings = inner.settings if inner else None
        self.results: dict[str, Result] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                key = row.pop("key")
                self.results[key] = Result(**row)

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        keys = [request_key(r, sampling) for r in requests]
        if self.inner is None:
            missing = sum(k not in self.results for k in keys)
            if missing:
                raise RuntimeError(f"{missing} requests were not recorded; rerun generation")
            if on_done:
                on_done(len(keys))
            return [self.results[k] for k in keys]
        results = self.inner.generate(requests, sampling, on_done)
        with self.path.open("a") as handle:
            for key, result in zip(keys, results, strict=True):
                self.results[key] = result
                handle.write(json.dumps({"key": key, **result.__dict__}) + "\n")
        return results
