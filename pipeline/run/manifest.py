"""Everything a version's manifest records, assembled in this one module: what made the
version (model, engine, seed, config and template hashes, packages, schema), what the run
covered (limit, fingerprint, refresh, superseded documents, failed documents), and what it
saw (requests, files, counts per stage and reason, the funnel, timings, tokens, the mix).

The manifest is written last (pipeline.dataset.manifest.write_json_atomic): its presence is
what marks a version complete, so everything here is known by then.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.job import JobConfig
from pipeline.dataset.card import CardRows
from pipeline.dataset.manifest import now, package_versions
from pipeline.dataset.mix import mix_report
from pipeline.dataset.records import PAIR_SCHEMA
from pipeline.dataset.refresh import read_superseded
from pipeline.executors.batches import Streamed
from pipeline.generation.backends.model_check import model_name
from pipeline.generation.cache import CachingGenerator
from pipeline.generation.stages import TokenCount
from pipeline.prompts.library import PromptLibrary
from pipeline.quality.chain import Funnel
from pipeline.run.scope import Scope


@dataclass
class Finished:
    """A run's outcome, for the manifest: what it covered and what it saw."""

    scope: Scope
    limit: int | None
    staging: Path
    version_dir: Path
    started_at: str
    streamed: Streamed
    files: dict[str, list[dict[str, Any]]]  # the shard lists of data/ and rejects/
    funnel: Funnel
    tokens: TokenCount
    # Set as the version is published: the run's wall time, and the kept pairs of mining
    # families with no mined negative (counted by the last check stage).
    seconds: float = 0.0
    without_negatives: int = 0


def manifest(
    config: JobConfig,
    library: PromptLibrary,
    generator: CachingGenerator,
    run: Finished,
    card: CardRows,
) -> dict[str, Any]:
    """The manifest of a finished run, in the order a reader meets its parts."""
    streamed, parent = run.streamed, run.scope.parent
    kept = run.streamed.pairs.rows
    return {
        **_made_by(config, library, generator, run.version_dir, parent, run.started_at),
        "limit": run.limit,
        "job_fingerprint": run.scope.fingerprint,
        **(
            {"refresh": {"since": parent[-1].name, "new_documents": streamed.documents}}
            if run.scope.seen
            else {}
        ),
        "superseded": read_superseded(run.staging).counts(),
        "requests": {
            "generated": generator.generated + streamed.generated,
            "cached": generator.cached + streamed.cached,
        },
        "executor": config.executor,
        # The actors' engines, when the driver opened none (a Ray job).
        **({"engine": streamed.engine} if streamed.engine is not None else {}),
        **(
            {"resumed_from_checkpoint": {"documents": streamed.resumed}} if streamed.resumed else {}
        ),
        "files": run.files,
        "counts": {
            "read": {
                "documents": streamed.documents,
                "skipped": dict(streamed.rejected.get("read", {})),
            },
            "kept": kept,
            "rejected": {stage: dict(reasons) for stage, reasons in streamed.rejected.items()},
            "pairs_without_negatives": run.without_negatives + streamed.without_negatives,
            "failed_documents": len(streamed.failed),  # uncovered: the next run retries them
        },
        "funnel": run.funnel.report(streamed.rejected),
        "timings": {"total_seconds": round(run.seconds, 3)}
        | {f"{k}_seconds": round(v, 3) for k, v in streamed.stage_seconds.items()},
        "tokens": token_report(run.tokens, kept),
        "finished_at": now(),
        "mix": mix_report(config, library, card.mix),
    }


def _made_by(
    config: JobConfig,
    library: PromptLibrary,
    generator: CachingGenerator,
    version_dir: Path,
    parent: list[Path],
    started_at: str,
) -> dict[str, Any]:
    """What made the version: enough to audit and reproduce it."""
    return {
        "name": config.name,
        "version": version_dir.name,
        "parent_version": parent[-1].name if parent else None,
        "status": "complete",
        "started_at": started_at,
        "model": model_name(generator.model, config.generator.name),
        "engine": generator.settings.as_dict() if generator.settings else None,
        "seed": config.seed,
        "config_hash": config.fingerprint(),
        "template_hashes": {t.type: library.task(t.type).template_hash for t in config.tasks},
        "output_dir": str(version_dir.parent),
        "config": config.model_dump(mode="json"),
        "packages": package_versions(),
        "schema": {f.name: str(f.type) for f in PAIR_SCHEMA},
    }


def token_report(tokens: TokenCount, kept: int) -> dict[str, Any]:
    """Prompt tokens, how many the prefix cache served, and what a kept pair cost."""
    return {
        "prompt": tokens.prompt,
        "prompt_cached": tokens.cached,
        "completion": tokens.completion,
        "uncached_prompt_per_kept_pair": round(tokens.uncached / kept, 1) if kept else None,
        "stages": tokens.stages,
    }
