"""The local executor: batches stream through the job's steps in this process.

Each batch goes read → document dedup → plan → every stage in order → rows, so memory is
bounded by the batch size, not the corpus; vLLM sees each stage of a batch as one request
list. Rejects and rows are written as each batch finishes (a kill leaves whole shards), and
the run's progress is saved between batches (pipeline.run.checkpoint).
"""

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config.input import InputConfig
from pipeline.config.job import JobConfig
from pipeline.executors.base import Drive
from pipeline.executors.batches import Streamed, run_stages
from pipeline.generation.backends.base import OnDone
from pipeline.generation.steps import JobSteps

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


class LocalExecutor:
    """Everything in this process (pipeline.executors.base.Executor)."""

    checkpoints = True  # batches end in reading order

    def __init__(self, config: JobConfig, quiet: bool) -> None:
        """Nothing to hold: the job's config and engine output concern other executors."""

    def cluster(self) -> AbstractContextManager[None]:
        return nullcontext()

    def reading(self, settings: InputConfig) -> InputConfig:
        return settings

    def embed(self, embedder: "Embedder", texts: list[str], on_done: OnDone) -> np.ndarray:
        return embedder.encode_documents(texts, on_done=on_done)

    def run(self, steps: JobSteps, drive: Drive) -> Streamed:
        """Drive every batch through the steps; the caller closes the writers."""
        progress = drive.progress
        out = Streamed(drive.pairs, drive.rejects, progress)
        hook = drive.checkpoints
        if hook is not None:
            hook.restore(out)
        try:
            for batch_docs, skipped in steps.batches():
                unique = out.admit(steps, batch_docs, skipped)
                if unique is not None:
                    batch = out.plan(steps, unique)
                    done = run_stages(
                        steps.stages, steps.generation, batch, steps.funnel, progress.advancer
                    )
                    out.took(done, progress_seen=True)
                    out.write(steps, done.candidates)
                if hook is not None:
                    hook.after_batch(out)
        finally:
            progress.close()
        return out
