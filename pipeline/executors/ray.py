"""The Ray executor: the job's stages on engine actors across a Ray cluster.

The driver (this process) streams the corpus with the job's reader, admits and plans each
batch (cheap: seeded draws), and hands the batch to the least busy engine actor
(pipeline.executors.engine_actor), which renders, generates, filters, mines and teaches
where its engine and embedder live. The one order-dependent step, query dedup, runs here,
over batches in corpus order: batches are finished in the order they were read, so the
first of two duplicates in corpus order is kept, as with the local executor, and the two
executors write equal datasets. At most `engines * in_flight` batches are out at once, so
the driver's memory is bounded by that, not by the corpus.

Actors restart once after a crash and their pending batches are retried; the request
cache answers what the dead actor had finished. A failure past that stops the job with one
line, and `embsynth run` resumes it from the cache.
"""

import logging
import os
import socket
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config.errors import UserError
from pipeline.config.input import InputConfig
from pipeline.config.job import EmbedderConfig, JobConfig, RayConfig
from pipeline.corpus.embedder import open_embedder
from pipeline.dataset.records import Candidate
from pipeline.executors.base import Drive
from pipeline.executors.batches import Streamed, run_stages
from pipeline.executors.engine_actor import ActorDone, EngineActor
from pipeline.generation.backends.base import OnDone
from pipeline.generation.steps import ORDERED, JobSteps

if TYPE_CHECKING:  # annotations only: importing it costs seconds of start-up
    from pipeline.embedding.inference import Embedder

# What engine actors need from the driver's environment on any node (engine and hub
# settings; the cache folder of bundled models).
FORWARDED_ENV = ("VLLM_", "HF_", "EMBSYNTH_", "TOKENIZERS_")
# Never forwarded, whatever its prefix: a credential (HF_TOKEN, VLLM_API_KEY). The actors
# load local models and call no API, and a runtime environment's variables are kept in
# plain text in Ray's job metadata and logs.
SECRET_WORDS = frozenset({"TOKEN", "KEY", "SECRET", "PASSWORD", "CREDENTIALS", "AUTH"})


@contextmanager
def ray_cluster(settings: RayConfig, quiet: bool) -> Iterator[None]:
    """Connected to the configured cluster (or a local one started for the job) while
    open; an unreachable address is a user error raised before anything is written."""
    address = settings.address
    if address and address != "auto":
        _reachable(address)
    elif address is None:
        # A job's own instance keeps to the loopback (Ray picks the host's address otherwise,
        # for nodes that will never join it); read by Ray when it is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    try:
        ray.init(
            # "local": a new instance for this job, never a stale `ray start` left on the host
            address=address or "local",
            include_dashboard=False,
            log_to_driver=not quiet,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": _forwarded_env()},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise UserError(f"cannot start or reach the Ray cluster ({where}): {exc}") from exc
    try:
        _check_resources(settings, ray.cluster_resources())
        yield
    finally:
        ray.shutdown()


def embed_corpus(config: JobConfig, texts: list[str], on_done: OnDone) -> np.ndarray:
    """The corpus's vectors, embedded in one slice per engine by Ray tasks placed like the
    engine actors (on their GPUs, before the actors take them); in corpus order."""
    import ray

    settings = config.ray
    task = ray.remote(_embed_slice).options(
        num_cpus=settings.cpus_per_engine, num_gpus=settings.gpus_per_engine
    )
    size = -(-len(texts) // settings.engines)
    pending = {
        task.remote(config.embedder, texts[start : start + size]): start
        for start in range(0, len(texts), size)
    }
    slices: dict[int, np.ndarray] = {}
    while pending:
        (ready,), _ = ray.wait(list(pending))
        slices[pending.pop(ready)] = vectors = ray.get(ready)
        on_done(len(vectors))
    return np.concatenate([slices[start] for start in sorted(slices)])


def _embed_slice(settings: EmbedderConfig, texts: list[str]) -> np.ndarray:
    return open_embedder(settings).encode_documents(texts)


def _reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"ray.address must be host:port or auto, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def _forwarded_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_ENV) and not SECRET_WORDS & set(k.upper().split("_"))
    }


def _check_resources(settings: RayConfig, resources: dict[str, float]) -> None:
    """Actors that can never be placed would wait forever: say so instead."""
    needs = {
        "CPU": settings.engines * settings.cpus_per_engine,
        "GPU": settings.engines * settings.gpus_per_engine,
    }
    for kind, needed in needs.items():
        if needed > resources.get(kind, 0):
            raise UserError(
                f"ray.engines={settings.engines} need {needed:g} {kind}s; the cluster has "
                f"{resources.get(kind, 0):g} (lower ray.engines or the per-engine {kind}s)"
            )


@dataclass
class _Batch:
    """A batch out on an actor: which actor, and the pending result."""

    actor: int
    result: Any  # ray.ObjectRef[ActorDone]


class RayExecutor:
    """Drives the job's batches through engine actors; see the module's docstring
    (pipeline.executors.base.Executor)."""

    # Batches finish out of reading order, several in flight: a resumed job goes on from
    # the request cache alone.
    checkpoints = False

    def __init__(self, config: JobConfig, quiet: bool) -> None:
        try:
            import ray  # noqa: F401  (only whether it is installed)
        except ImportError as exc:
            raise UserError(
                "executor: ray needs Ray, an optional extra: pip install 'embsynth[ray]'"
            ) from exc
        self.config = config
        self.quiet = quiet
        self.actors: list[Any] = []
        self.busy: list[int] = []
        self.index_ref: Any = None  # ray.ObjectRef[CorpusIndex]

    def cluster(self) -> AbstractContextManager[None]:
        return ray_cluster(self.config.ray, self.quiet)

    def reading(self, settings: InputConfig) -> InputConfig:
        size = self.config.ray.batch_size
        return settings if size is None else settings.model_copy(update={"batch_size": size})

    def embed(self, embedder: "Embedder", texts: list[str], on_done: OnDone) -> np.ndarray:
        """On the cluster's workers, in slices (the driver's embedder stays idle)."""
        if not texts:
            return embedder.encode_documents(texts, on_done=on_done)
        return embed_corpus(self.config, texts, on_done)

    def run(self, steps: JobSteps, drive: Drive) -> Streamed:
        """Start the actors, drive every batch; the caller closes the writers."""
        self._start_actors(drive)
        out = Streamed(drive.pairs, drive.rejects, drive.progress)
        segments = _segments([name for name, _ in steps.stages])
        queue: deque[_Batch] = deque()
        in_flight = self.config.ray.engines * self.config.ray.in_flight
        try:
            for docs, skipped in steps.batches():
                unique = out.admit(steps, docs, skipped)
                if unique is None:
                    continue
                queue.append(self._submit(segments[0][1], out.plan(steps, unique)))
                while len(queue) >= in_flight:
                    self._finish(queue.popleft(), steps, segments, out)
            while queue:
                self._finish(queue.popleft(), steps, segments, out)
        finally:
            self.progress.close()
        return out

    def _start_actors(self, drive: Drive) -> None:
        import ray

        settings, config = self.config.ray, self.config
        if settings.tensor_parallel_size > 1:
            engine = {
                **config.generator.engine,
                "tensor_parallel_size": settings.tensor_parallel_size,
            }
            config = config.model_copy(
                update={"generator": config.generator.model_copy(update={"engine": engine})}
            )
        remote = ray.remote(EngineActor).options(
            num_cpus=settings.cpus_per_engine,
            num_gpus=settings.gpus_per_engine,
            max_restarts=1,
            max_task_retries=1,
        )
        # Held for the whole run, not only while the actors start: a restarted actor is
        # built again from the same arguments, and Ray deletes an object nothing refers to.
        self.index_ref = ray.put(drive.index) if drive.index is not None else None
        self.actors = [
            remote.remote(config, drive.staging, f"a{i}", self.index_ref)
            for i in range(settings.engines)
        ]
        self.busy = [0] * settings.engines
        self.progress = drive.progress
        self.tokens = drive.tokens

    def _submit(self, names: list[str], candidates: list[Candidate]) -> _Batch:
        actor = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[actor] += 1
        return _Batch(actor, self.actors[actor].run.remote(names, candidates))

    def _finish(
        self,
        batch: _Batch,
        steps: JobSteps,
        segments: list[tuple[bool, list[str]]],
        out: Streamed,
    ) -> None:
        """Take a batch's first segment and run the rest in order, then write its rows."""
        candidates = self._take(batch, steps, out)
        for ordered, names in segments[1:]:
            if ordered:
                stages = [(name, stage) for name, stage in steps.stages if name in names]
                done = run_stages(
                    stages, steps.generation, candidates, steps.funnel, self.progress.advancer
                )
                out.took(done, progress_seen=True)
                candidates = done.candidates
            else:
                candidates = self._take(self._submit(names, candidates), steps, out)
        out.write(steps, candidates)

    def _take(self, batch: _Batch, steps: JobSteps, out: Streamed) -> list[Candidate]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            done: ActorDone = ray.get(batch.result)
        except RayTaskError as exc:
            if isinstance(exc.cause, UserError):
                raise exc.cause from None
            raise
        except RayActorError as exc:
            raise UserError(
                f"engine actor a{batch.actor} died twice ({type(exc).__name__}); "
                "run the job again to resume: finished requests are cached"
            ) from exc
        finally:
            self.busy[batch.actor] -= 1
        for step, counts in done.funnel.items():
            steps.funnel.count(step, counts["in"], counts["out"])
        self.tokens.merge(done.tokens)
        out.took(done.stages, progress_seen=False)
        out.generated += done.generated
        out.cached += done.cached
        out.without_negatives += done.without_negatives
        out.engine = out.engine or done.engine
        return done.stages.candidates


def _segments(names: list[str]) -> list[tuple[bool, list[str]]]:
    """The stage list cut into runs: (ordered, names); ordered runs stay on the driver."""
    runs: list[tuple[bool, list[str]]] = []
    for name in names:
        ordered = name in ORDERED
        if runs and runs[-1][0] == ordered:
            runs[-1][1].append(name)
        else:
            runs.append((ordered, [name]))
    assert not runs[0][0], "a job starts with generation"
    return runs
