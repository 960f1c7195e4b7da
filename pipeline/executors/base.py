"""The executor seam: what runs a job's steps, named by the config's `executor`.

An executor does three things for a run (pipeline.run.job): it holds what it runs on open
(`cluster`: nothing for the local one, a Ray cluster), embeds the corpus for the index
(`embed`: in this process, or in slices on the cluster's workers), and drives the job's
steps over batches (`run`: pipeline.generation.steps describes them; the executor knows
only their order). A new executor is one module with a class of this shape and one line of
EXECUTORS; modules are imported only when a job names them (Ray costs seconds).
"""

import importlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.config.input import InputConfig
from pipeline.config.job import JobConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.writer import ShardWriter
from pipeline.executors.batches import Streamed
from pipeline.executors.console import StepProgress
from pipeline.generation.backends.base import OnDone
from pipeline.generation.stages import TokenCount
from pipeline.generation.steps import JobSteps

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder

EXECUTORS = {
    "local": "pipeline.executors.local:LocalExecutor",
    "ray": "pipeline.executors.ray:RayExecutor",
}


class BatchHook(Protocol):
    """What saves a run's progress between batches (pipeline.run.checkpoint)."""

    def restore(self, out: Streamed) -> None:
        """Put a resumed run's earlier counts into the new part's `Streamed`."""
        ...

    def after_batch(self, out: Streamed) -> None:
        """One more reader batch is done, its rows given to the writers."""
        ...


@dataclass
class Drive:
    """What a run hands the executor besides the steps: the staging folder (a Ray job's
    actors write their request caches there), the corpus index, the progress bars, the
    token count to add to, the writers of pairs and rejects (the caller closes them), and
    for an executor that checkpoints, what saves the run's progress."""

    staging: Path
    index: CorpusIndex | None
    progress: StepProgress
    tokens: TokenCount
    pairs: ShardWriter
    rejects: ShardWriter
    checkpoints: BatchHook | None = None


class Executor(Protocol):
    """One object per run; see the module docstring. `checkpoints`: whether it finishes
    batches in reading order, calling `Drive.checkpoints` after each, so a resumed run
    can go on from a checkpoint (pipeline.run.checkpoint)."""

    checkpoints: bool

    def cluster(self) -> AbstractContextManager[None]:
        """What the executor runs on, open for the run's life (entered before the lock)."""
        ...

    def reading(self, settings: InputConfig) -> InputConfig:
        """The reader settings batches are cut with (an executor may size them)."""
        ...

    def embed(self, embedder: "Embedder", texts: list[str], on_done: OnDone) -> np.ndarray:
        """The vectors of `texts`, in order."""
        ...

    def run(self, steps: JobSteps, drive: Drive) -> Streamed:
        """Every batch through every step; what was seen, for the manifest."""
        ...


def open_executor(config: JobConfig, quiet: bool) -> Executor:
    """The executor the config names (`quiet`: engines' output goes to their logs)."""
    module, _, name = EXECUTORS[config.executor].partition(":")
    executor: Executor = getattr(importlib.import_module(module), name)(config, quiet)
    return executor
