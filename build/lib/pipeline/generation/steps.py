"""What a generation job is, apart from what runs it: the documents it reads, the step
that plans them, the stage list (each family's generation stages by position, then the
checks), and how a kept candidate becomes a row. An executor (pipeline.executors) drives
these steps over batches; the steps know nothing of it."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline.config.job import JobConfig
from pipeline.dataset.records import Candidate, Document, Reject
from pipeline.dedup.documents import DocumentDedup
from pipeline.generation.backends.base import Generator
from pipeline.generation.stages import StageFn, TokenCount, generation_stage
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.chain import Context, Funnel, post_generation_stages

# One batch from the reader: documents, and rows it skipped (empty, too long).
Batches = Iterator[tuple[list[Document], list[Reject]]]
# Stages whose verdicts depend on every earlier batch (the query dedup's state): an
# executor runs them in one place, over batches in corpus order, so the first of two
# duplicates in corpus order is the one kept whatever runs the job.
ORDERED = frozenset({"dedup"})


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


def stage_names(config: JobConfig, library: PromptLibrary) -> list[str]:
    """One executor step per stage position; families with different stage lists share a
    step, named by all the stage names at that position ("config/classify")."""
    lists = [[s.name for s in library.task(task.type).stages] for task in config.tasks]
    return [
        "/".join(dict.fromkeys(names[i] for names in lists if i < len(names)))
        for i in range(max(map(len, lists)))
    ]


def job_stages(
    config: JobConfig,
    library: PromptLibrary,
    generator: Generator,
    context: Context,
    funnel: Funnel,
    tokens: TokenCount,
) -> list[tuple[str, StageFn]]:
    """Every stage of the job in order: generation by position, then the checks."""
    stages: list[tuple[str, StageFn]] = [
        (name, generation_stage(i, library, generator, config, tokens))
        for i, name in enumerate(stage_names(config, library))
    ]
    return stages + post_generation_stages(config, library, context, funnel)
