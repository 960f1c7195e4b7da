"""What a generation job is, apart from what runs it: the documents it reads, the step
that plans them, the stage list (each family's generation stages by position, then the
checks), and how a kept candidate becomes a row. An executor (pipeline.executors) drives
these steps over batches; the steps know nothing of it."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.checks import Funnel
from pipeline.dedup.documents import DocumentDedup
from pipeline.records import Candidate, Document, Reject
from pipeline.stages import StageFn

# One batch from the reader: documents, and rows it skipped (empty, too long).
Batches = Iterator[tuple[list[Document], list[Reject]]]


@dataclass
class JobSteps:
    """The steps of one job, in flow order (read → plan → stages → row)."""

    batches: Callable[[], Batches]
    seen: set[str]  # documents earlier versions read (a refresh skips them)
    documents_dedup: DocumentDedup
    plan: Callable[[list[Document]], list[Candidate]]
    stages: list[tuple[str, StageFn]]
    generation: list[str]  # the names of the generation steps among `stages`
    to_row: Callable[[Candidate], dict[str, object]]
    funnel: Funnel
