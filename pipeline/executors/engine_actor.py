"""The engine actor of a Ray job: one vLLM engine (one GPU group, or CPU cores) with the
job's own stages around it, so a batch's generation, filters, mining and teacher run where
its engine and embedder live; the driver sends it plans and gets candidates back.

Each actor writes the request cache under its own name (no two write the same file) and
reads every actor's segments when it starts, so a restarted actor, or a resumed job on
other actors, answers finished requests from the cache."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.job import JobConfig
from pipeline.corpus.embedder import open_embedder
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate
from pipeline.executors.batches import StagesDone, release_freed, run_stages
from pipeline.generation.backends.registry import Opening, open_backend
from pipeline.generation.cache import CachingGenerator, RequestCache
from pipeline.generation.stages import TokenCount
from pipeline.generation.steps import job_stages, stage_names
from pipeline.personas.library import load_personas
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.chain import Context, Funnel, needs_embedder


@dataclass
class ActorDone:
    """A run of stages on an actor, and what its engine did for it."""

    stages: StagesDone
    funnel: dict[str, dict[str, int]]
    tokens: TokenCount
    generated: int
    cached: int
    without_negatives: int
    engine: dict[str, Any] | None


class EngineActor:
    """Made remote by pipeline.executors.ray with the job's resources per engine."""

    def __init__(self, config: JobConfig, staging: Path, writer: str, index: CorpusIndex | None):
        library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
        self.generator = CachingGenerator(
            RequestCache(staging / "cache", writer),
            config.generator.model,
            config.seed,
            opener=lambda: open_backend(config, Opening()),
        )
        embedder = open_embedder(config.embedder) if needs_embedder(config) else None
        # No query dedup here: it runs on the driver, over batches in corpus order.
        self.context = Context.for_job(config, library, embedder, index, None, self.generator)
        self.funnel = Funnel()
        self.tokens = TokenCount()
        self.stages = dict(
            job_stages(config, library, self.generator, self.context, self.funnel, self.tokens)
        )
        self.generation = stage_names(config, library)

    def run(self, names: list[str], candidates: list[Candidate]) -> ActorDone:
        """Run the named stages over one batch, in order."""
        self.funnel.steps.clear()
        tokens = self.tokens
        tokens.prompt = tokens.cached = tokens.completion = 0
        tokens.stages = {}
        before = (self.generator.generated, self.generator.cached, self.context.without_negatives)
        done = run_stages(
            [(name, self.stages[name]) for name in names], self.generation, candidates, self.funnel
        )
        release_freed()
        settings = self.generator.settings
        return ActorDone(
            done,
            dict(self.funnel.steps),
            TokenCount(tokens.prompt, tokens.cached, tokens.completion, dict(tokens.stages)),
            self.generator.generated - before[0],
            self.generator.cached - before[1],
            self.context.without_negatives - before[2],
            settings.as_dict() if settings is not None else None,
        )
