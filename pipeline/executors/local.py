"""The local executor: batches stream through the job's steps in this process.

Each batch goes read → document dedup → plan → every stage in order → rows, so memory is
bounded by the batch size, not the corpus; vLLM sees each stage of a batch as one request
list. Rejects and rows are written as each batch finishes (a kill leaves whole shards).
"""

from pipeline.dataset.writer import ShardWriter
from pipeline.executors.batches import Streamed, run_stages
from pipeline.executors.console import StepProgress
from pipeline.generation.steps import JobSteps


def run_local(
    steps: JobSteps, progress: StepProgress, pairs: ShardWriter, rejects: ShardWriter
) -> Streamed:
    """Drive every batch through the steps; the caller closes the writers."""
    out = Streamed(pairs, rejects, progress)
    try:
        for batch_docs, skipped in steps.batches():
            unique = out.admit(steps, batch_docs, skipped)
            if unique is None:
                continue
            batch = out.plan(steps, unique)
            done = run_stages(
                steps.stages, steps.generation, batch, steps.funnel, progress.advancer
            )
            out.took(done, progress_seen=True)
            out.write(steps, done.candidates)
    finally:
        progress.close()
    return out
