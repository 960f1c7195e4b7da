"""Run a generation job: check the input, take the dataset lock, resume or start a
version, open the engine (on the first cache miss), the embedder and the corpus index,
build the job's steps (pipeline.generation.steps), let the executor drive them (pipeline.executors),
then write the manifest and card and publish the version."""

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from pipeline.config.errors import GenerationFailed, UserError
from pipeline.config.job import JobConfig
from pipeline.corpus.embedder import embedder_path, open_embedder
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.reader import (
    check_corpus,
    read_batches,
    read_queries,
)
from pipeline.dataset.card import card_rows, write_card
from pipeline.dataset.lock import dataset_lock
from pipeline.dataset.manifest import now, write_json_atomic
from pipeline.dataset.mix import mix_report
from pipeline.dataset.records import (
    PAIR_SCHEMA,
    REJECT_SCHEMA,
)
from pipeline.dataset.refresh import (
    read_superseded,
    write_covered,
    write_superseded,
)
from pipeline.dataset.version_manifest import token_report, version_manifest
from pipeline.dataset.writer import (
    ShardWriter,
    new_version,
    publish,
    reset_for_resume,
)
from pipeline.dedup.documents import DocumentDedup
from pipeline.dedup.queries import QueryDedup
from pipeline.executors.batches import Streamed
from pipeline.executors.console import Listener, StepProgress, engine_output_to
from pipeline.executors.local import run_local
from pipeline.generation.backends.base import Generator
from pipeline.generation.backends.model_check import check_model
from pipeline.generation.cache import CachingGenerator, RequestCache
from pipeline.generation.planner import plan
from pipeline.generation.stages import TokenCount, pair_row
from pipeline.generation.steps import JobSteps, job_stages, stage_names
from pipeline.personas.library import load_personas
from pipeline.personas.retrieval import PersonaChooser
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.chain import (
    Context,
    Funnel,
    needs_embedder,
    post_stage_names,
)
from pipeline.quality.decontamination import SETTING as DECONTAMINATION
from pipeline.run.scope import run_scope
from pipeline.teacher.scorers import check_teacher

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


def prepare(config: JobConfig) -> PromptLibrary:
    """Everything that can fail on user input, checked before a model is loaded."""
    library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
    known = {s.name for task in config.tasks for s in library.task(task.type).stages}
    unused = sorted(set(config.sampling) - known)
    if unused:
        raise UserError(
            f"sampling names stages no task has: {', '.join(unused)} "
            f"(stages: {', '.join(sorted(known))})"
        )
    check_corpus(config.input)
    for path in config.filters.decontamination.files:
        read_queries(path, DECONTAMINATION)
    check_teacher(config.teacher)
    if config.generator.backend == "vllm" or config.generator.server.launch:
        check_model(config.generator.model)  # a server's model is a name it serves
    if needs_embedder(config):
        embedder_path(config.embedder.model)
    return library


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

    `quiet_engine` sends the engine's own output to `logs/engine.log` inside the version;
    `listener` sees every progress step (step name, documents done) as it happens.
    """
    library = prepare(config)
    root = (out_dir or config.output.dir) / config.name
    with _cluster(config, quiet_engine), dataset_lock(root):
        return _run_locked(
            config, library, root, generator, limit, progress, quiet_engine, listener, refresh
        )


def _cluster(config: JobConfig, quiet: bool) -> AbstractContextManager[None]:
    """The Ray cluster of `executor: ray`, reached before anything is written."""
    if config.executor != "ray":
        return nullcontext()
    from pipeline.executors.ray import ray_cluster

    return ray_cluster(config.ray, quiet)


def _run_locked(
    config: JobConfig,
    library: PromptLibrary,
    root: Path,
    generator: Generator | None,
    limit: int | None,
    progress: bool,
    quiet_engine: bool,
    listener: Listener | None,
    refresh: bool,
) -> RunSummary:
    scope = run_scope(config, library, root, limit, refresh)
    parent, gone, unfinished = scope.parent, scope.gone, scope.unfinished
    embedder = open_embedder(config.embedder) if needs_embedder(config) else None
    dedup = _query_dedup(config, embedder, parent, gone.ids)
    staging, version_dir = unfinished or new_version(root)
    reset_for_resume(staging)
    write_superseded(staging, gone)
    log = staging / "logs" / "engine.log" if quiet_engine else None
    with ExitStack() as stack, engine_output_to(log) as console:
        say = (lambda line: print(line, file=console)) if progress else (lambda line: None)
        cache = RequestCache(staging / "cache")
        if unfinished is not None:
            lost = f" ({cache.dropped} unreadable lines: generated again)" if cache.dropped else ""
            say(f"resuming {version_dir.name}: {len(cache.results)} generations cached{lost}")
        caching = CachingGenerator(
            cache,
            generator.model if generator is not None else config.generator.model,
            config.seed,
            inner=generator,
            opener=lambda: _open_engine(config, say, log, stack, staging / "logs"),
        )
        if caching.settings is not None:
            say(f"engine: {caching.settings.describe()}")
        index = None
        if embedder is not None:
            shown = console if progress else None
            index = _corpus_index(config, embedder, limit, scope.total, shown)
        context = Context.for_job(config, library, embedder, index, dedup, caching)
        personas = None
        if embedder is not None and config.personas.select == "retrieve":
            personas = PersonaChooser.for_job(config.tasks, library.personas, embedder, index)
        steps = ["read", *stage_names(config, library), *post_stage_names(config)]
        progress_bars = StepProgress(steps, scope.total, console if progress else None, listener)
        summary = _generate(
            config,
            library,
            caching,
            limit,
            (staging, version_dir, parent),
            progress_bars,
            context,
            personas,
            (scope.fingerprint, scope.seen),
        )
    return summary


def _query_dedup(
    config: JobConfig, embedder: "Embedder | None", parent: list[Path], superseded: set[str]
) -> QueryDedup | None:
    """The query dedup of this run, loaded with every earlier version's published queries
    but those of `superseded` documents (before anything is written: an incompatible state
    is a user error)."""
    dedup = config.dedup
    if not (dedup.exact or dedup.near.enabled or dedup.semantic.enabled):
        return None
    name = config.embedder.model if embedder is not None else None
    queries = QueryDedup(dedup, name, embedder.dimension if embedder is not None else 0)
    queries.load_versions(parent, superseded)
    return queries


def _corpus_index(
    config: JobConfig, embedder: "Embedder", limit: int | None, total: int, console: TextIO | None
) -> CorpusIndex:
    """Every document of the job (up to the limit), embedded once for the whole run (on
    the cluster's workers, in slices, with `executor: ray`)."""
    documents = [doc for docs, _ in read_batches(config.input, limit) for doc in docs]
    with tqdm(
        total=len(documents), desc="  corpus", unit="doc", file=console, disable=console is None
    ) as bar:
        if config.executor == "ray" and documents:
            from pipeline.executors.ray import embed_corpus

            vectors = embed_corpus(config, [d.text for d in documents], bar.update)
            return CorpusIndex.from_vectors(documents, vectors)
        return CorpusIndex.build(documents, embedder, bar.update)


def _open_engine(
    config: JobConfig, say: Callable[[str], None], log: Path | None, stack: ExitStack, logs: Path
) -> Generator:
    """The job's generator, opened on its first cache miss: the in-process engine, or the
    server client (after starting the server when the job launches its own)."""
    settings = config.generator
    if settings.backend == "openai":
        from pipeline.generation.backends.openai_server import OpenAIServerGenerator

        if settings.server.launch:
            from pipeline.generation.backends.server_process import launched_server

            say(f"starting a vLLM server for {settings.model} on port {settings.server.port} ...")
            stack.enter_context(launched_server(settings, config.seed, logs / "server.log"))
        say(f"generating through {settings.server.base_url}")
        return OpenAIServerGenerator(settings.model, settings.server)
    from pipeline.generation.backends.vllm_offline import open_generator

    say(f"loading {config.generator.model} ...")
    start = time.perf_counter()
    try:
        generator = open_generator(config.generator, config.seed)
    except UserError as exc:
        raise UserError(f"{exc} (engine log: {log})" if log else str(exc)) from exc
    say(
        f"engine ready in {time.perf_counter() - start:.0f} s"
        + (f"; its log: {log}" if log else "")
    )
    if generator.settings is not None:
        say(f"engine: {generator.settings.describe()}")
    return generator


def _generate(
    config: JobConfig,
    library: PromptLibrary,
    generator: CachingGenerator,
    limit: int | None,
    version: tuple[Path, Path, list[Path]],
    progress: StepProgress,
    context: Context,
    personas: PersonaChooser | None,
    job: tuple[str, set[str]],
) -> RunSummary:
    staging, version_dir, parent = version
    fingerprint, seen = job  # `seen`: documents earlier versions read (a refresh skips them)
    tokens = TokenCount()
    funnel = Funnel()
    generation = stage_names(config, library)
    reading = config.input
    if config.executor == "ray" and config.ray.batch_size is not None:
        reading = reading.model_copy(update={"batch_size": config.ray.batch_size})
    steps = JobSteps(
        batches=lambda: read_batches(reading, limit),
        seen=seen,
        documents_dedup=DocumentDedup(config.dedup),
        plan=lambda docs: plan(docs, config, library, personas.choose(docs) if personas else None),
        stages=job_stages(config, library, generator, context, funnel, tokens),
        generation=generation,
        to_row=lambda c: pair_row(c, library, config, generator.model),
        funnel=funnel,
    )
    pairs = ShardWriter(staging / "data", PAIR_SCHEMA, config.output.shard_size)
    rejects = ShardWriter(staging / "rejects", REJECT_SCHEMA, config.output.shard_size)
    started_at, start = now(), time.perf_counter()
    try:
        if config.executor == "ray":
            from pipeline.executors.ray import RayExecutor

            executor = RayExecutor(config, staging, context.index, progress, tokens)
            streamed = executor.run(steps, pairs, rejects)
        else:
            streamed = run_local(steps, progress, pairs, rejects)
    except UserError as exc:
        raise UserError(f"{exc} (the unfinished version is left in {staging})") from exc
    read, documents = streamed.read, streamed.documents
    rejected, stage_seconds = streamed.rejected, streamed.stage_seconds

    _check_failures(config, streamed, staging)
    if context.dedup is not None:
        context.dedup.save(staging)
    write_covered(staging, [doc for doc in read if doc.doc_id not in streamed.failed])
    manifest = version_manifest(config, library, generator, version_dir, parent, started_at)
    manifest["limit"] = limit
    manifest["job_fingerprint"] = fingerprint
    if seen:
        manifest["refresh"] = {"since": parent[-1].name, "new_documents": documents}
    manifest["superseded"] = read_superseded(staging).counts()
    generated, cached = generator.generated + streamed.generated, generator.cached + streamed.cached
    manifest["requests"] = {"generated": generated, "cached": cached}
    manifest["executor"] = config.executor
    if streamed.engine is not None:  # the actors' engines (the driver opened none)
        manifest["engine"] = streamed.engine
    manifest["files"] = {"data": pairs.close(), "rejects": rejects.close()}
    seconds = time.perf_counter() - start
    generate_seconds = sum(stage_seconds[name] for name in generation)
    manifest["counts"] = {
        "read": {"documents": documents, "skipped": dict(rejected.get("read", {}))},
        "kept": pairs.rows,
        "rejected": {stage: dict(reasons) for stage, reasons in rejected.items()},
        "pairs_without_negatives": context.without_negatives + streamed.without_negatives,
        "failed_documents": len(streamed.failed),  # left uncovered: the next run retries them
    }
    manifest["funnel"] = funnel.report(rejected)
    manifest["timings"] = {"total_seconds": round(seconds, 3)} | {
        f"{k}_seconds": round(v, 3) for k, v in stage_seconds.items()
    }
    manifest["tokens"] = token_report(tokens, pairs.rows)
    manifest["finished_at"] = now()
    card = card_rows(staging)  # column counts, score arrays and a few example rows
    manifest["mix"] = mix_report(config, library, card.mix)
    write_card(staging, manifest, card)
    write_json_atomic(manifest, staging / "manifest.json")
    publish(staging, version_dir)
    return RunSummary(
        version_dir,
        documents,
        pairs.rows,
        dict(rejected),
        seconds,
        generate_seconds,
        tokens,
        dict(stage_seconds),
        generated,
        cached,
    )


def _check_failures(config: JobConfig, streamed: Streamed, staging: Path) -> None:
    """Stop before publishing when too many documents failed to generate: the version stays
    unfinished, and the next run resumes it, generating only the failed requests (every
    other result is in the request cache)."""
    failed, read = len(streamed.failed), streamed.documents
    if read and failed / read > config.generator.max_failed_share:
        raise GenerationFailed(
            f"requests failed for {failed} of {read} documents (more than "
            f"generator.max_failed_share {config.generator.max_failed_share:g}); "
            f"the unfinished version is left in {staging}: run again to retry them"
        )
