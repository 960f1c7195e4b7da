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

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from pipeline.config.job import JobConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Reject, plan_count
from pipeline.dedup.queries import QueryDedup
from pipeline.dedup.text import text_key
from pipeline.generation.backends.base import Generator, OnDone
from pipeline.generation.stages import StageFn, example_queries, pair_instruction
from pipeline.negatives.mining import mine
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.consistency import (
    check_consistency,
    check_round_trip,
    embed_positives,
    embed_queries,
)
from pipeline.quality.decontamination import Decontaminator
from pipeline.quality.heuristics import check_heuristics
from pipeline.quality.language import check_languages
from pipeline.quality.length import check_length
from pipeline.quality.minimal import check_pair
from pipeline.teacher.judge import TeacherJudge, judge_for
from pipeline.teacher.llm_judge import judge_check

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder

Check = Callable[[list[Candidate]], list[Reject | None]]


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


def per_candidate(fn: Callable[[Candidate], Reject | None]) -> Check:
    """A check written for one candidate, applied to a batch."""
    return lambda candidates: [fn(c) for c in candidates]


def embedding_check(
    context: Context, fn: Callable[..., list[Reject | None]], *args: object
) -> Check:
    """A check on query vectors: embeds the batch's queries first (once per candidate)."""

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        assert context.embedder is not None and context.index is not None
        embed_queries(candidates, context.embedder)
        embed_positives(candidates, context.embedder)
        return fn(candidates, context.index, *args)

    return run


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
    """The filter checks this job's config switches on, in order, each on the families
    that list it."""
    examples = {task.type: example_queries(library, task.type) for task in config.tasks}
    filters = config.filters

    def minimal(c: Candidate) -> Reject | None:
        spec = library.task(c.task)
        bounds, copy = spec.applies("bounds"), spec.applies("copy")
        return check_pair(c, filters, examples[c.task], bounds, copy)

    checks: list[tuple[str, Check]] = [("filter", per_candidate(minimal))]
    if any(task.queries_per_document > 1 for task in config.tasks):
        checks.append(("same_document", same_document))
    if filters.decontamination.files:
        checks.append(
            ("decontamination", per_candidate(Decontaminator(filters.decontamination).check))
        )
    if filters.length.enabled:
        checks.append(("length", per_candidate(lambda c: check_length(c, filters.length))))
    if filters.language.enabled:
        languages = list(config.languages.query)

        def written(c: Candidate) -> str:  # the text the plan asked for in its language
            in_language = library.task(c.task).record.language
            return (c.positive_text if in_language == "positive" else c.query) or ""

        checks.append(
            ("language", lambda cs: check_languages(cs, filters.language, languages, written))
        )
    if filters.heuristics.enabled:
        checks.append(
            ("heuristics", per_candidate(lambda c: check_heuristics(c, filters.heuristics)))
        )
    if filters.consistency.enabled:
        checks.append(
            ("consistency", embedding_check(context, check_consistency, filters.consistency))
        )
    if filters.round_trip.enabled:
        judged = check_round_trip
        if filters.round_trip.judge == "teacher":
            assert context.teacher is not None
            judged = teacher_round_trip(context.teacher)
        checks.append(("round_trip", embedding_check(context, judged, filters.round_trip)))
    if filters.llm_judge.enabled:
        assert context.generator is not None
        instruction_of = partial(pair_instruction, library)
        checks.append(
            ("llm_judge", judge_check(context.generator, filters.llm_judge, instruction_of))
        )
    if any(task.samples > 1 for task in config.tasks):
        checks.append(("one_per_plan", one_per_plan))
    everyone = ("filter", "same_document", "decontamination", "llm_judge", "one_per_plan")
    return [
        (name, check if name in everyone else for_families(library, name, check))
        for name, check in checks
    ]


def same_document(candidates: list[Candidate]) -> list[Reject | None]:
    """Several plans of one document (`queries_per_document`) can come back with the same
    query: the first stays. A document's candidates are planned into one batch, so looking
    within the batch is enough."""
    seen: set[tuple[str, str, str]] = set()
    verdicts: list[Reject | None] = []
    for c in candidates:
        key = (c.doc.doc_id, c.task, text_key(c.query or ""))
        verdicts.append(
            Reject(c.doc.doc_id, c.task, "same_document", "duplicate_in_document",
                   "another query of this document is the same", c.query)
            if key in seen
            else None
        )  # fmt: skip
        seen.add(key)
    return verdicts


def one_per_plan(candidates: list[Candidate]) -> list[Reject | None]:
    """Of a plan's samples that passed every filter, the first (in sample order) becomes
    the pair; the others are spares. A plan's samples are generated into one batch."""
    kept: dict[tuple[str, str, int], int] = {}
    verdicts: list[Reject | None] = []
    for c in candidates:
        first = kept.setdefault(c.plan_key, c.sample)
        verdicts.append(
            None
            if first == c.sample
            else Reject(c.doc.doc_id, c.task, "one_per_plan", "spare_sample",
                        f"sample {first} of this plan passed first", c.query)
        )  # fmt: skip
    return verdicts


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


def teacher_round_trip(judge: TeacherJudge) -> Callable[..., list[Reject | None]]:
    """The round trip as the teacher ranks (the index argument is the judge's own)."""
    return lambda candidates, _index, config: judge.round_trip(candidates, config)


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
    """Whether any switched-on step embeds text (persona retrieval, query vectors)."""
    filters = config.filters
    return (
        config.personas.select == "retrieve"
        or filters.consistency.enabled
        or filters.round_trip.enabled
        or config.dedup.semantic.enabled
        or config.negatives.enabled
        or config.teacher.kind != "none"
    )
