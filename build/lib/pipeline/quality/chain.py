"""The steps after generation, as checks: each takes a batch of finished candidates and
gives one verdict per candidate (a Reject, or None to keep it), records its scores on the
candidate, and counts what went in and out in the funnel.

Order matters and is fixed: cheap text checks first (minimal filters, length, language,
heuristics), then the embedding checks (consistency, round trip) and the LLM judge, then one
sample per plan (the first that passed them all), then hard-negative mining and the
teacher (which may drop a pair), and query dedup last. Dedup is last because its verdicts
are remembered: a query it keeps blocks every later duplicate, in this run and in every
refresh (its state), so it may only keep what is published; checked earlier, a pair the
teacher then drops would still block its duplicates. The price: mining and the teacher also
see the duplicates dedup then rejects (a few percent of pairs, cheap next to generation;
the `llm` teacher's yes/no requests are the dearest part). Checks are grouped into
executor stages (`filter`, `mine`, `teach` with a teacher, `dedup`) so the console shows a
bar each, while the manifest's funnel and the rejects name each check.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from pipeline.config.job import JobConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Reject, plan_count
from pipeline.dedup.queries import QueryDedup
from pipeline.generation.backends.base import Generator, OnDone
from pipeline.generation.stages import StageFn, pair_instruction
from pipeline.negatives.mining import mine
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.consistency import embed_queries
from pipeline.quality.registry import Check, filters
from pipeline.teacher.judge import TeacherJudge, judge_for

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


@dataclass
class Funnel:
    """Documents in and out of every step, in flow order, summed over batches."""

    steps: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, step: str, entered: int, left: int) -> None:
        counts = self.steps.setdefault(step, {"in": 0, "out": 0})
        counts["in"] += entered
        counts["out"] += left

    def report(self, rejected: dict[str, dict[str, int]]) -> list[dict[str, object]]:
        """The manifest's funnel: per step, in, out and the rejects by reason."""
        return [
            {"step": step, **counts, "rejected": dict(rejected.get(step, {}))}
            for step, counts in self.steps.items()
        ]


@dataclass
class Context:
    """What the checks share: the embedder, the corpus index, the dedup state, the teacher
    and the generator (the LLM judge's)."""

    embedder: "Embedder | None"
    index: CorpusIndex | None
    dedup: QueryDedup | None
    teacher: TeacherJudge | None = None
    generator: Generator | None = None
    without_negatives: int = 0

    @classmethod
    def for_job(
        cls,
        config: JobConfig,
        library: PromptLibrary,
        embedder: "Embedder | None",
        index: CorpusIndex | None,
        dedup: QueryDedup | None,
        generator: Generator,
    ) -> "Context":
        instruction_of = partial(pair_instruction, library)
        teacher = judge_for(config.teacher, index, generator, instruction_of)
        return cls(embedder, index, dedup, teacher, generator)


def for_families(library: PromptLibrary, name: str, check: Check) -> Check:
    """`check` on the candidates whose task family lists it; the others pass untouched."""

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        chosen = [i for i, c in enumerate(candidates) if library.task(c.task).applies(name)]
        verdicts: list[Reject | None] = [None] * len(candidates)
        if chosen:
            for i, verdict in zip(chosen, check([candidates[i] for i in chosen]), strict=True):
                verdicts[i] = verdict
        return verdicts

    return run


def filter_checks(
    config: JobConfig, library: PromptLibrary, context: Context
) -> list[tuple[str, Check]]:
    """The registered filter checks this job's config switches on, in chain order, each on
    every family or on the families that list it (pipeline.quality.registry)."""
    checks: list[tuple[str, Check]] = []
    for entry in filters():
        if entry.switched_on(config):
            check = entry.build(config, library, context)
            if not entry.every_family:
                check = for_families(library, entry.name, check)
            checks.append((entry.name, check))
    return checks


def dedup_checks(context: Context) -> list[tuple[str, Check]]:
    if context.dedup is None:
        return []
    dedup = context.dedup

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        if dedup.semantic is not None and context.embedder is not None:
            embed_queries(candidates, context.embedder)
        return dedup.check(candidates)

    return [("dedup", run)]


def mining_checks(
    config: JobConfig, library: PromptLibrary, context: Context
) -> list[tuple[str, Check]]:
    if not config.negatives.enabled or context.index is None:
        return []

    by_teacher = config.negatives.ranked_by == "teacher"  # the config checks there is one
    ranking = context.teacher.ranking if context.teacher and by_teacher else None

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        assert context.embedder is not None and context.index is not None
        embed_queries(candidates, context.embedder)
        mine(candidates, context.index, config.negatives, ranking)  # counted once published
        return [None] * len(candidates)

    return [("negatives", for_families(library, "negatives", run))]


def teacher_checks(library: PromptLibrary, context: Context) -> list[tuple[str, Check]]:
    """The teacher's scores on each kept pair whose positive is a corpus document (the
    families that mine), and its verdict when it prefers a negative."""
    judge = context.teacher
    assert judge is not None

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        if context.embedder is not None:
            embed_queries(candidates, context.embedder)
        return judge.score(candidates)

    return [("teacher", for_families(library, "negatives", run))]


def checks_stage(checks: list[tuple[str, Check]], funnel: Funnel) -> StageFn:
    """Run checks in order over a batch; each sees only what the earlier ones kept."""

    def run(candidates: list[Candidate], on_done: OnDone) -> tuple[list[Candidate], list[Reject]]:
        rejects: list[Reject] = []
        entered = candidates
        for name, check in checks:
            verdicts = check(candidates) if candidates else []
            kept = [c for c, v in zip(candidates, verdicts, strict=True) if v is None]
            rejects.extend(v for v in verdicts if v is not None)
            funnel.count(name, len(candidates), len(kept))
            candidates = kept
        on_done(plan_count(entered))
        return candidates, rejects

    return run


def post_generation_stages(
    config: JobConfig, library: PromptLibrary, context: Context, funnel: Funnel
) -> list[tuple[str, StageFn]]:
    """The executor stages after generation: filter, mine, teach when the job has a
    teacher, and dedup. The last one counts the kept pairs that got no mined negative."""
    groups = [filter_checks(config, library, context), mining_checks(config, library, context)]
    if context.teacher is not None:
        groups.append(teacher_checks(library, context))
    groups.append(dedup_checks(context))
    stages = [
        (name, checks_stage(checks, funnel))
        for name, checks in zip(post_stage_names(config), groups, strict=True)
    ]
    name, last = stages[-1]
    stages[-1] = (name, counting_without_negatives(last, config, library, context))
    return stages


def counting_without_negatives(
    stage: StageFn, config: JobConfig, library: PromptLibrary, context: Context
) -> StageFn:
    """`stage`, adding to `context.without_negatives` its kept pairs of mining families that
    have no mined negative: counted on what is published, not on what mining saw (a pair a
    later check drops is no pair without negatives)."""
    if not config.negatives.enabled or context.index is None:  # as mining_checks
        return stage

    def run(candidates: list[Candidate], on_done: OnDone) -> tuple[list[Candidate], list[Reject]]:
        kept, rejects = stage(candidates, on_done)
        context.without_negatives += sum(
            not c.negatives and library.task(c.task).applies("negatives") for c in kept
        )
        return kept, rejects

    return run


def post_stage_names(config: JobConfig) -> tuple[str, ...]:
    """The progress steps after generation (one bar each), in flow order."""
    return ("filter", "mine", *(("teach",) if config.teacher.kind != "none" else ()), "dedup")


def needs_embedder(config: JobConfig) -> bool:
    """Whether any switched-on step embeds text: a registered check that needs the
    embedder, persona retrieval, semantic dedup, mining or a teacher (each scores with the
    job's embedder, or re-ranks what it retrieves)."""
    return (
        config.personas.select == "retrieve"
        or any("embedder" in entry.needs and entry.switched_on(config) for entry in filters())
        or config.dedup.semantic.enabled
        or config.negatives.enabled
        or config.teacher.kind != "none"
    )
