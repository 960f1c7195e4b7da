"""The local executor: batches stream through the job's steps in this process.

Each batch goes read → document dedup → plan → every stage in order → rows, so memory is
bounded by the batch size, not the corpus; vLLM sees each stage of a batch as one request
list. Rejects and rows are written as each batch finishes (a kill leaves whole shards).
"""

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from pipeline.console import StepProgress
from pipeline.job import JobSteps
from pipeline.records import Document, Reject, reject_row
from pipeline.writer import ShardWriter


@dataclass
class Streamed:
    """What the executor saw: documents read, rejects by stage and reason, step times."""

    documents: int = 0
    read: list[Document] = field(default_factory=list)
    rejected: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def run_local(
    steps: JobSteps, progress: StepProgress, pairs: ShardWriter, rejects: ShardWriter
) -> Streamed:
    """Drive every batch through the steps; the caller closes the writers."""
    out = Streamed()
    funnel = steps.funnel

    def record(batch_rejects: list[Reject]) -> None:
        for reject in batch_rejects:
            out.rejected[reject.stage][reject.reason] += 1
        rejects.add([reject_row(r) for r in batch_rejects])

    try:
        for batch_docs, skipped in steps.batches():
            docs = [d for d in batch_docs if d.key not in steps.seen]
            if not docs and not skipped:
                continue
            out.read.extend(docs)
            out.documents += len(docs)
            record(skipped)
            funnel.count("read", len(docs) + len(skipped), len(docs))
            unique, duplicates = steps.documents_dedup.check(docs)
            record(duplicates)
            funnel.count("doc_dedup", len(docs), len(unique))
            progress.advance("read", len(docs) + len(skipped))
            progress.dropped("read", len(skipped) + len(duplicates))
            t0 = time.perf_counter()
            batch = steps.plan(unique)
            out.stage_seconds["plan"] += time.perf_counter() - t0
            for name, stage in steps.stages:
                t0 = time.perf_counter()
                entered = len(batch)
                batch, batch_rejects = stage(batch, progress.advancer(name))
                if name in steps.generation:
                    funnel.count(name, entered, len(batch))
                out.stage_seconds[name] += time.perf_counter() - t0
                record(batch_rejects)
                progress.dropped(name, len(batch_rejects))
            t0 = time.perf_counter()
            pairs.add([steps.to_row(c) for c in batch])
            out.stage_seconds["write"] += time.perf_counter() - t0
    finally:
        progress.close()
    return out
