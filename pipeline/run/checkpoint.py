"""A run's progress saved between batches, so a job killed after hours goes on from its last
checkpoint instead of from its first batch.

The request cache (pipeline.generation.cache) spares a resumed run its generations, but every
step after them (filters, dedup, mining, the teacher) used to run again for every document:
at a million documents, about eight hours of both cores that a kill threw away. So every
`output.checkpoint_minutes` of a run, between two batches, the executor saves what the next
batch depends on: how many of the reader's batches are done, the writers' shard lists and
buffered rows, the executor's counts and times (`Streamed`), the funnel, the token count,
the document and query dedup state and the run's seconds so far. A resumed run loads the
newest whole checkpoint, removes the shards written after it, skips the batches it covers
and goes on: the dataset an uninterrupted run makes, its manifest counting every part.

Layout (`STAGING/progress/`): the query dedup's kept queries (`kept-queries.*`, appended as
they are kept: pipeline.dedup.kept) and `checkpoint-NNNNNN/`: `state.pkl`, one file per HNSW
graph of the semantic dedup (usearch's own format, written beside the pickle rather than
copied into it) and `done.json`, written last: a folder without it is a checkpoint a kill
tore, and is ignored. Saving one removes the older ones.

The pickle is this tool's own file in the user's staging folder, read back by the same
user's next run, and only when that run is the same job reading the same way
(`Scope.reading`) and the same embsynth (its version and the checkpoint format: the pickle
holds this code's objects): another's, or one that does not load, is set aside with a line,
and the run resumes from the request cache alone. Executors that finish batches out of
reading order (Ray's actors) do not checkpoint (`Executor.checkpoints`): their resume is the
request cache's. A graph is built again from its saved vectors on loading
(`Graph.restored`), so it grows as the uninterrupted run's does.
"""

import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline import __version__
from pipeline.config.job import JobConfig
from pipeline.corpus.nearest import Graph
from pipeline.dataset.manifest import write_json_atomic
from pipeline.dedup.documents import DocumentDedup
from pipeline.dedup.kept import KeptQueries, Mark
from pipeline.dedup.queries import QueryDedup
from pipeline.executors.base import Executor
from pipeline.executors.batches import Streamed
from pipeline.generation.cache import CachingGenerator
from pipeline.generation.stages import TokenCount
from pipeline.generation.steps import JobSteps
from pipeline.quality.chain import Context
from pipeline.run.scope import Scope

PROGRESS = "progress"  # the staging folder's subfolder of checkpoints and kept queries
STATE, DONE = "state.pkl", "done.json"
FORMAT = f"{__version__}/1"  # this embsynth and this checkpoint layout
# Streamed's counts a checkpoint carries over (its writers and bars belong to the new part).
COUNTS = ("read", "rejected", "stage_seconds", "without_negatives", "failed", "engine")


@dataclass
class Saved:
    """What one checkpoint holds."""

    reading: str  # Scope.reading of the run that saved it
    format: str  # FORMAT of the embsynth that saved it
    batches: int  # reader batches done
    seconds: float  # the run's total so far, over every part
    streamed: dict[str, Any]  # COUNTS of Streamed
    requests: tuple[int, int]  # (generated, cached) so far, over every part
    pairs: tuple[list[dict[str, Any]], list[dict[str, Any]]]  # (shards, buffer)
    rejects: tuple[list[dict[str, Any]], list[dict[str, Any]]]
    funnel: dict[str, dict[str, int]]
    tokens: TokenCount
    documents_dedup: DocumentDedup
    query_dedup: QueryDedup | None
    without_negatives: int  # the checks' own count (Context)

    @property
    def documents(self) -> int:
        return len(self.streamed["read"])

    def shard_paths(self) -> set[str]:
        """The shards (relative to the staging folder) the checkpoint's writers wrote."""
        return {s["path"] for s in self.pairs[0] + self.rejects[0]}


class _Saver(pickle.Pickler):
    """Writes graphs as files beside the pickle and kept queries as their mark."""

    def __init__(self, file: IO[bytes], folder: Path) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder = folder
        self.graphs = 0

    def persistent_id(self, obj: Any) -> tuple[str, Any] | None:
        if isinstance(obj, Graph):
            name = f"graph-{self.graphs}.usearch"
            self.graphs += 1
            obj.save(self.folder / name)
            return "graph", (name, obj.index.expansion_search)
        if isinstance(obj, KeptQueries):
            return "kept", obj.mark()
        return None


class _Loader(pickle.Unpickler):
    def __init__(self, file: IO[bytes], folder: Path) -> None:
        super().__init__(file)
        self.folder = folder

    def persistent_load(self, pid: tuple[str, Any]) -> Any:
        kind, value = pid
        if kind == "graph":
            name, expansion = value
            return Graph.restored(self.folder / name, expansion)
        if kind == "kept" and isinstance(value, Mark):
            return KeptQueries.reopen(value, self.folder.parent)
        raise pickle.UnpicklingError(f"unknown persistent object {kind}")


def progress_folder(staging: Path) -> Path:
    return staging / PROGRESS


def load_checkpoint(staging: Path, reading: str, say: Callable[[str], None]) -> Saved | None:
    """The newest whole checkpoint of this job in the staging folder, or None (there is
    none, it is another job's or it does not load: said, and set aside)."""
    found = sorted(progress_folder(staging).glob("checkpoint-*/" + DONE))
    if not found:
        return None
    folder = found[-1].parent
    try:
        with (folder / STATE).open("rb") as handle:
            saved = _Loader(handle, folder).load()
    except Exception as exc:  # a pickle can fail in any way; the cache still resumes the run
        say(f"checkpoint {folder.name} does not load ({exc!r}): resuming from the cache")
        return None
    made = (getattr(saved, "reading", None), getattr(saved, "format", None))
    if not isinstance(saved, Saved) or made != (reading, FORMAT):
        say(f"checkpoint {folder.name} is another job's or embsynth's: resuming from the cache")
        return None
    return saved


class Checkpoints:
    """Saves the run's progress every `every` seconds between batches, and gives a resumed
    run's executor what the checkpoint it started from had counted."""

    def __init__(
        self,
        staging: Path,
        every: float,
        reading: str,
        saved: Saved | None,
        start: float,
        parts: tuple[JobSteps, Context, CachingGenerator, TokenCount],
    ) -> None:
        self.folder = progress_folder(staging)
        self.every, self.reading, self.saved, self.start = every, reading, saved, start
        self.steps, self.context, self.generator, self.tokens = parts
        self.batches = saved.batches if saved is not None else 0
        self.last = time.perf_counter()

    @classmethod
    def for_run(
        cls,
        config: JobConfig,
        executor: Executor,
        staging: Path,
        scope: Scope,
        saved: Saved | None,
        start: float,
        parts: tuple[JobSteps, Context, CachingGenerator, TokenCount],
    ) -> "Checkpoints | None":
        """What saves a run's progress, for an executor that checkpoints."""
        if not executor.checkpoints:
            return None
        every = 60 * config.output.checkpoint_minutes
        return cls(staging, every, scope.reading, saved, start, parts)

    @property
    def seconds(self) -> float:
        """The run's seconds so far, the earlier parts' included."""
        return time.perf_counter() - self.start

    def restore(self, out: Streamed) -> None:
        """Put what the checkpoint counted back: into the new part's `Streamed` and writers,
        the funnel, the token count and the checks' count; the document dedup state back
        into the steps; and the bars' totals less the documents it covered."""
        saved = self.saved
        if saved is None:
            return
        for name in COUNTS:
            setattr(out, name, saved.streamed[name])
        out.generated, out.cached = saved.requests
        out.resumed = saved.documents
        out.pairs.shards, out.pairs.buffer = saved.pairs
        out.rejects.shards, out.rejects.buffer = saved.rejects
        self.steps.funnel.steps.update(saved.funnel)
        self.steps.documents_dedup = saved.documents_dedup
        self.tokens.merge(saved.tokens)
        self.context.without_negatives = saved.without_negatives
        skipped = sum(saved.streamed["rejected"].get("read", {}).values())
        out.progress.covered(saved.documents + skipped)

    def after_batch(self, out: Streamed) -> None:
        """One more reader batch is done; save when the last save is `every` seconds old."""
        self.batches += 1
        if time.perf_counter() - self.last >= self.every:
            started = time.perf_counter()
            self.save(out)
            self.last = time.perf_counter()
            out.stage_seconds["checkpoint"] += self.last - started  # the manifest's timings

    def save(self, out: Streamed) -> None:
        number = self.batches
        folder = self.folder / f"checkpoint-{number:06d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        saved = Saved(
            self.reading,
            FORMAT,
            number,
            self.seconds,
            {name: getattr(out, name) for name in COUNTS},
            (self.generator.generated + out.generated, self.generator.cached + out.cached),
            (out.pairs.shards, out.pairs.buffer),
            (out.rejects.shards, out.rejects.buffer),
            self.steps.funnel.steps,
            self.tokens,
            self.steps.documents_dedup,
            self.context.dedup,
            self.context.without_negatives,
        )
        with (folder / STATE).open("wb") as handle:
            _Saver(handle, folder).dump(saved)
            handle.flush()
            os.fsync(handle.fileno())
        for graph in folder.glob("graph-*"):
            with graph.open("rb") as handle:
                os.fsync(handle.fileno())
        write_json_atomic({"batches": number, "documents": saved.documents}, folder / DONE)
        for older in self.folder.glob("checkpoint-*"):
            if older != folder:
                shutil.rmtree(older)
