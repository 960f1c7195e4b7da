"""A job's life, top to bottom: check what the user gave (one pass over the corpus), take
the dataset's lock, decide what the run covers (resume, refresh, retry, new version), open
the generator, the embedder and the corpus index, let the executor drive the job's steps
(pipeline.generation.steps) over batches, then write the manifest and card and publish.

What runs the steps is the executor's business (pipeline.executors.base), what a backend is
the registry's (pipeline.generation.backends.registry), what the manifest holds
pipeline.run.manifest's; this module only orders them.
"""

import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from pipeline.config.errors import GenerationFailed, UserError
from pipeline.config.job import JobConfig
from pipeline.corpus.columns import TEXTS, CorpusColumns, write_columns
from pipeline.corpus.embedder import embedder_path, open_embedder
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.reader import read_batches, read_queries
from pipeline.corpus.survey import Survey, kept_documents, survey_corpus
from pipeline.corpus.vectors import VectorStore, embedder_identity
from pipeline.dataset.card import card_rows, write_card
from pipeline.dataset.lock import dataset_lock
from pipeline.dataset.manifest import now, write_json_atomic
from pipeline.dataset.records import PAIR_SCHEMA, REJECT_SCHEMA, Document
from pipeline.dataset.refresh import write_covered, write_superseded
from pipeline.dataset.writer import ShardWriter, new_version, publish, reset_for_resume
from pipeline.dedup.documents import DocumentDedup
from pipeline.dedup.queries import QueryDedup
from pipeline.executors.base import Drive, Executor, open_executor
from pipeline.executors.batches import Streamed
from pipeline.executors.console import Listener, StepProgress, engine_output_to
from pipeline.generation.backends.base import Generator
from pipeline.generation.backends.model_check import model_name
from pipeline.generation.backends.registry import Opening, check_backend, open_backend
from pipeline.generation.cache import CachingGenerator, RequestCache
from pipeline.generation.planner import plan
from pipeline.generation.stages import TokenCount, pair_row
from pipeline.generation.steps import JobSteps, job_stages, stage_names
from pipeline.personas.library import load_personas
from pipeline.personas.retrieval import PersonaChooser
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.chain import Context, Funnel, needs_embedder, post_stage_names
from pipeline.quality.decontamination import SETTING as DECONTAMINATION
from pipeline.run.checkpoint import (
    PROGRESS,
    Checkpoints,
    Saved,
    load_checkpoint,
    progress_folder,
)
from pipeline.run.manifest import Finished, manifest
from pipeline.run.scope import Scope, run_scope
from pipeline.teacher.scorers import check_teacher

EMBED_CHUNK = 65_536  # documents read, embedded and stored at a time

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder


@dataclass
class RunSummary:
    """What a finished run produced, for the CLI summary and for tests."""

    version_dir: Path
    documents: int
    kept: int
    rejected: dict[str, Counter[str]]
    seconds: float
    generate_seconds: float
    tokens: TokenCount
    stage_seconds: dict[str, float] = field(default_factory=dict)
    requests_generated: int = 0  # generation requests sent to the engine
    requests_cached: int = 0  # answered from the version's request cache (a resume)

    @property
    def pairs_per_second(self) -> float:
        return self.kept / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        total = self.tokens.completion
        return total / self.generate_seconds if self.generate_seconds else 0.0


def prepare(config: JobConfig, limit: int | None = None) -> tuple[PromptLibrary, Survey]:
    """Everything that can fail on user input, checked before a model is loaded; the
    corpus is surveyed here, in the one pass before generation (pipeline.corpus.survey)."""
    library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
    known = {s.name for task in config.tasks for s in library.task(task.type).stages}
    unused = sorted(set(config.sampling) - known)
    if unused:
        raise UserError(
            f"sampling names stages no task has: {', '.join(unused)} "
            f"(stages: {', '.join(sorted(known))})"
        )
    for path in config.filters.decontamination.files:
        read_queries(path, DECONTAMINATION)
    check_teacher(config.teacher)
    check_backend(config)
    if needs_embedder(config):
        embedder_path(config.embedder.model)
    return library, survey_corpus(config.input, limit)


def run_job(
    config: JobConfig,
    generator: Generator | None = None,
    limit: int | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    quiet_engine: bool = False,
    listener: Listener | None = None,
    refresh: bool = False,
) -> RunSummary:
    """Generate a new dataset version from the job config and return its summary.

    With `refresh`, the version covers only documents no earlier version read (new ids, or
    changed texts), and records the earlier-covered documents whose text changed or that
    left the corpus (their old pairs are superseded: pipeline.dataset.refresh); with
    nothing new, changed or deleted it raises NothingToDo before writing anything.

    `quiet_engine` sends the engine's output to the version's `logs/engine.log`; `listener`
    sees every progress step as it happens; `generator` replaces the configured backend.
    """
    library, survey = prepare(config, limit)
    root = (out_dir or config.output.dir) / config.name
    executor = open_executor(config, quiet_engine)
    with executor.cluster(), dataset_lock(root):
        scope = run_scope(config, library, survey, root, limit, refresh)
        embedder, store = _embedder(config, root)
        staging, version_dir = scope.unfinished or new_version(root)
        log = staging / "logs" / "engine.log" if quiet_engine else None
        with ExitStack() as stack, engine_output_to(log) as console:
            shown = console if progress else None
            say = (lambda line: print(line, file=console)) if progress else (lambda line: None)
            saved, dedup = _resume(config, executor, embedder, scope, staging, say)
            write_superseded(staging, scope.gone)
            opening = Opening(say, stack, staging / "logs", log)
            caching = _caching(config, generator, staging, opening, scope)
            index = _corpus_index(executor, config, embedder, survey, store, shown)
            context = Context.for_job(config, library, embedder, index, dedup, caching)
            tokens = TokenCount()
            steps = _steps(config, library, executor, caching, context, scope, tokens, limit, saved)
            names = ["read", *stage_names(config, library), *post_stage_names(config)]
            bars = StepProgress(names, scope.total, shown, listener)
            pairs, rejects = _writer(staging, "data", config), _writer(staging, "rejects", config)
            started_at, start = now(), time.perf_counter() - (saved.seconds if saved else 0.0)
            parts = (steps, context, caching, tokens)
            checkpoints = Checkpoints.for_run(config, executor, staging, scope, saved, start, parts)
            drive = Drive(staging, index, bars, tokens, pairs, rejects, checkpoints)
            streamed = _drive(config, executor, steps, drive)
            files = {"data": pairs.close(), "rejects": rejects.close()}
            finished = Finished(
                scope,
                limit,
                staging,
                version_dir,
                started_at,
                streamed,
                files,
                steps.funnel,
                tokens,
            )
            return _publish(config, library, caching, context, finished, start, steps.generation)


def _resume(
    config: JobConfig,
    executor: Executor,
    embedder: "Embedder | None",
    scope: Scope,
    staging: Path,
    say: Callable[[str], None],
) -> tuple[Saved | None, QueryDedup | None]:
    """The checkpoint an unfinished version of this job is resumed from, if any
    (pipeline.run.checkpoint), with what a killed run wrote after it cleared; and the query
    dedup: the checkpoint's, or one loaded with the earlier versions' queries. A fresh
    version whose dedup state cannot load is removed again (nothing half-written)."""
    saved = None
    if scope.unfinished is not None and executor.checkpoints:
        saved = load_checkpoint(staging, scope.reading, say)
    reset_for_resume(staging, {PROGRESS, *saved.shard_paths()} if saved is not None else set())
    if saved is not None:
        say(f"resuming from its checkpoint: {saved.documents} documents done")
        return saved, saved.query_dedup
    try:
        named = executor.checkpoints
        return None, _query_dedup(config, embedder, scope, progress_folder(staging), named)
    except UserError:
        if scope.unfinished is None:
            shutil.rmtree(staging)
        raise


def _caching(
    config: JobConfig, generator: Generator | None, staging: Path, opening: Opening, scope: Scope
) -> CachingGenerator:
    """The job's generator behind the version's request cache; the backend is opened on
    the first request the cache cannot answer."""
    cache = RequestCache(staging / "cache")
    if scope.unfinished is not None:
        lost = f" ({cache.dropped} unreadable lines: generated again)" if cache.dropped else ""
        resumed = scope.unfinished[1].name
        opening.say(f"resuming {resumed}: {len(cache)} generations cached{lost}")
    caching = CachingGenerator(
        cache,
        generator.model if generator is not None else config.generator.model,
        config.seed,
        inner=generator,
        opener=lambda: open_backend(config, opening),
    )
    if caching.settings is not None:
        opening.say(f"engine: {caching.settings.describe()}")
    return caching


def _query_dedup(
    config: JobConfig, embedder: "Embedder | None", scope: Scope, folder: Path, named: bool
) -> QueryDedup | None:
    """The query dedup of this run, loaded with every earlier version's published queries
    but those of superseded documents (an incompatible state is a user error); its kept
    queries go to `folder`, as named files when the run checkpoints."""
    dedup = config.dedup
    if not (dedup.exact or dedup.near.enabled or dedup.semantic.enabled):
        return None
    name = config.embedder.model if embedder is not None else None
    dimension = embedder.dimension if embedder is not None else 0
    exact_below = config.embedder.exact_below
    queries = QueryDedup(dedup, name, dimension, exact_below, folder, named)
    queries.load_versions(scope.parent, scope.gone.ids)
    return queries


def _embedder(config: JobConfig, root: Path) -> tuple["Embedder | None", VectorStore | None]:
    """The job's embedder and the dataset's corpus vectors it made (pipeline.corpus.vectors),
    opened before anything is written: vectors of another embedder are a user error. None
    for a job that embeds nothing."""
    if not needs_embedder(config):
        return None, None
    embedder = open_embedder(config.embedder)
    identity = embedder_identity(embedder.path, embedder.backend)
    return embedder, VectorStore(root, identity, embedder.dimension)


def _corpus_index(
    executor: Executor,
    config: JobConfig,
    embedder: "Embedder | None",
    survey: Survey,
    store: VectorStore | None,
    console: TextIO | None,
) -> CorpusIndex | None:
    """Every document of the job (up to the limit, as the survey listed them) with its
    vector, from the dataset's corpus state: the columns of its ids and texts
    (pipeline.corpus.columns) and the stored vectors. A state not written yet, or documents
    no vector is stored for, take one more read of the corpus, in chunks: the missing
    vectors are embedded by the executor and stored chunk by chunk (a kill keeps those
    done), and no text is held past its chunk. None for a job that embeds nothing."""
    if embedder is None or store is None:
        return None
    keys = [key for _, key in survey.keys]
    wanted = set(store.missing(keys))
    state = store.corpus_state(keys)
    texts = state / TEXTS
    if wanted or not texts.is_file():
        with tqdm(
            total=len(wanted), desc="  corpus", unit="doc", file=console, disable=console is None
        ) as bar:
            chunks = _embedded(executor, embedder, store, wanted, bar.update, config, survey)
            if texts.is_file():
                deque(chunks, maxlen=0)
            else:
                write_columns(texts, chunks)
    return CorpusIndex(
        CorpusColumns.open(texts), store.vectors(keys, state), state, config.embedder.exact_below
    )


def _embedded(
    executor: Executor,
    embedder: "Embedder",
    store: VectorStore,
    wanted: set[str],
    on_done: Callable[[int], None],
    config: JobConfig,
    survey: Survey,
) -> Iterator[list[Document]]:
    """The surveyed documents in chunks, each chunk's unstored vectors embedded and stored
    before it is passed on."""
    for chunk in kept_documents(config.input, survey, EMBED_CHUNK):
        new = list({d.key: d.text for d in chunk if d.key in wanted}.items())
        if new:
            store.add([k for k, _ in new], executor.embed(embedder, [t for _, t in new], on_done))
            wanted.difference_update(k for k, _ in new)
        yield chunk


def _steps(
    config: JobConfig,
    library: PromptLibrary,
    executor: Executor,
    generator: CachingGenerator,
    context: Context,
    scope: Scope,
    tokens: TokenCount,
    limit: int | None,
    saved: Saved | None,
) -> JobSteps:
    """The job's steps (pipeline.generation.steps), personas chosen per document when the
    job retrieves them; the reader's batches a checkpoint covered are left out."""
    personas = None
    if context.embedder is not None and config.personas.select == "retrieve":
        personas = PersonaChooser.for_job(
            config.tasks, library.personas, context.embedder, context.index
        )
    reading = executor.reading(config.input)
    skip = saved.batches if saved is not None else 0
    funnel = Funnel()
    named = model_name(generator.model, config.generator.name)
    return JobSteps(
        batches=lambda: islice(read_batches(reading, limit), skip, None),
        seen=scope.seen,  # documents earlier versions read (a refresh skips them)
        documents_dedup=DocumentDedup(config.dedup),
        plan=lambda docs: plan(docs, config, library, personas.choose(docs) if personas else None),
        stages=job_stages(config, library, generator, context, funnel, tokens),
        generation=stage_names(config, library),
        to_row=lambda c: pair_row(c, library, config, named),
        funnel=funnel,
    )


def _writer(staging: Path, folder: str, config: JobConfig) -> ShardWriter:
    schema = PAIR_SCHEMA if folder == "data" else REJECT_SCHEMA
    return ShardWriter(staging / folder, schema, config.output.shard_size)


def _publish(
    config: JobConfig,
    library: PromptLibrary,
    generator: CachingGenerator,
    context: Context,
    run: Finished,
    start: float,
    generation: list[str],
) -> RunSummary:
    """Save the dedup state and covered documents, write the card and the manifest (last),
    and move the version into place."""
    streamed, staging = run.streamed, run.staging
    if context.dedup is not None:
        context.dedup.save(staging)
    write_covered(staging, [(i, key) for i, key in streamed.read if i not in streamed.failed])
    run.seconds = time.perf_counter() - start
    run.without_negatives = context.without_negatives
    card = card_rows(staging)  # column counts, score arrays and a few example rows
    record = manifest(config, library, generator, run, card)
    write_card(staging, record, card)
    write_json_atomic(record, staging / "manifest.json")
    # The checkpoints go last: a kill before this still resumes from them.
    shutil.rmtree(progress_folder(staging), ignore_errors=True)
    publish(staging, run.version_dir)
    stage_seconds = streamed.stage_seconds
    return RunSummary(
        run.version_dir,
        streamed.documents,
        streamed.pairs.rows,
        dict(streamed.rejected),
        run.seconds,
        sum(stage_seconds[name] for name in generation),
        run.tokens,
        dict(stage_seconds),
        record["requests"]["generated"],
        record["requests"]["cached"],
    )


def _drive(config: JobConfig, executor: Executor, steps: JobSteps, drive: Drive) -> Streamed:
    """The executor's run of every batch, and the check that enough of it generated."""
    try:
        streamed = executor.run(steps, drive)
    except UserError as exc:
        raise UserError(f"{exc} (the unfinished version is left in {drive.staging})") from exc
    _check_failures(config, streamed, drive.staging)
    return streamed


def _check_failures(config: JobConfig, streamed: Streamed, staging: Path) -> None:
    """Stop before publishing when too many documents failed to generate: the version stays
    unfinished, and the next run resumes it, generating only the failed requests (every
    other result is in the request cache)."""
    failed, read = len(streamed.failed), streamed.documents
    if read and failed / read > config.generator.max_failed_share:
        # The checkpoints hold these documents as done: without them the next run asks
        # their requests again (every other answer is cached).
        shutil.rmtree(progress_folder(staging), ignore_errors=True)
        raise GenerationFailed(
            f"requests failed for {failed} of {read} documents (more than "
            f"generator.max_failed_share {config.generator.max_failed_share:g}); "
            f"the unfinished version is left in {staging}: run again to retry them"
        )
