"""What every executor does with one batch, wherever it runs it: admit the documents read
(refresh skip, document dedup), run a run of stages in order with their accounting, and
gather what was seen into one `Streamed` report."""

import ctypes
import ctypes.util
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pipeline.dataset.records import Candidate, Document, Reject, plan_count, reject_row
from pipeline.dataset.writer import ShardWriter
from pipeline.executors.console import StepProgress
from pipeline.generation.backends.base import OnDone
from pipeline.generation.parse import TRANSIENT
from pipeline.generation.stages import StageFn
from pipeline.generation.steps import JobSteps
from pipeline.quality.chain import Funnel


@dataclass
class StagesDone:
    """A batch after some stages: what is left, what they rejected, and per step the
    documents done (progress), the documents dropped and the seconds spent."""

    candidates: list[Candidate]
    rejects: list[Reject] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)


def run_stages(
    stages: list[tuple[str, StageFn]],
    generation: list[str],
    candidates: list[Candidate],
    funnel: Funnel,
    advancer: Callable[[str], OnDone] | None = None,
) -> StagesDone:
    """Run `stages` in order over one batch; each sees only what the earlier ones kept."""
    out = StagesDone(candidates)
    for name, stage in stages:

        def on_done(n: int, name: str = name) -> None:
            out.done[name] += n
            if advancer is not None:
                advancer(name)(n)

        t0 = time.perf_counter()
        before = out.candidates
        out.candidates, rejects = stage(before, on_done)
        if name in generation:
            funnel.count(name, len(before), len(out.candidates))
        out.seconds[name] += time.perf_counter() - t0
        out.rejects.extend(rejects)
        # Progress counts plans: a spare sample's reject drops none, a plan's last one does.
        out.dropped[name] += plan_count(before) - plan_count(out.candidates)
    return out


@dataclass
class Streamed:
    """What the executor saw: documents read, rejects by stage and reason, the documents
    whose requests failed, step times, and what engines elsewhere did (a Ray job's actors:
    requests, negatives, engine settings)."""

    pairs: ShardWriter
    rejects: ShardWriter
    progress: StepProgress
    # (doc_id, content key) of each document read: what the version records as covered.
    # Ids and keys only, not texts: a run over millions of documents keeps no corpus text.
    read: list[tuple[str, str]] = field(default_factory=list)
    rejected: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    generated: int = 0
    cached: int = 0
    without_negatives: int = 0
    engine: dict[str, Any] | None = None
    failed: set[str] = field(default_factory=set)  # ids of documents a request failed for
    resumed: int = 0  # documents read before the checkpoint this run went on from

    @property
    def documents(self) -> int:
        """Documents read (those an earlier version covered are not)."""
        return len(self.read)

    def record(self, rejects: list[Reject]) -> None:
        for reject in rejects:
            self.rejected[reject.stage][reject.reason] += 1
            if reject.reason in TRANSIENT:
                self.failed.add(reject.doc_id)
        self.rejects.add([reject_row(r) for r in rejects])

    def admit(
        self, steps: JobSteps, docs: list[Document], skipped: list[Reject]
    ) -> list[Document] | None:
        """The batch's documents to plan: not read by an earlier version, not duplicates;
        None for a batch with nothing to count (all read before)."""
        docs = [d for d in docs if d.key not in steps.seen]
        if not docs and not skipped:
            return None
        self.read.extend((d.doc_id, d.key) for d in docs)
        self.record(skipped)
        steps.funnel.count("read", len(docs) + len(skipped), len(docs))
        unique, duplicates = steps.documents_dedup.check(docs)
        self.record(duplicates)
        steps.funnel.count("doc_dedup", len(docs), len(unique))
        self.progress.advance("read", len(docs) + len(skipped))
        self.progress.dropped("read", len(skipped) + len(duplicates))
        return unique

    def plan(self, steps: JobSteps, docs: list[Document]) -> list[Candidate]:
        t0 = time.perf_counter()
        candidates = steps.plan(docs)
        self.stage_seconds["plan"] += time.perf_counter() - t0
        # The later bars count plans: a document of two plans is two of their total.
        self.progress.planned(len(docs), plan_count(candidates))
        return candidates

    def took(self, done: StagesDone, progress_seen: bool) -> None:
        """Count a run of stages; `progress_seen`: its bars already moved as it ran."""
        self.record(done.rejects)
        for name, seconds in done.seconds.items():
            self.stage_seconds[name] += seconds
            if not progress_seen:
                self.progress.advance(name, done.done[name])
            self.progress.dropped(name, done.dropped[name])

    def write(self, steps: JobSteps, candidates: list[Candidate]) -> None:
        t0 = time.perf_counter()
        self.pairs.add([steps.to_row(c) for c in candidates])
        release_freed()
        self.stage_seconds["write"] += time.perf_counter() - t0


def release_freed() -> None:
    """Give the memory a finished batch freed back to the system (glibc's `malloc_trim`;
    nothing elsewhere). glibc keeps freed pages in its arenas for reuse, and the stages'
    tables and the engine's buffers differ in size from batch to batch, so without this a
    long run's footprint creeps up by what it once needed (measured: the tiny-model scale
    job's process held 0.3-0.5 GiB more before a trim than after, growing with the batches
    it ran)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)
