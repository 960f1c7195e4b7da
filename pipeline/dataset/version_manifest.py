"""What a run records about a version beyond its counts: the model, engine, seed, config
and template hashes, package versions and schema, and where the prompt tokens went."""

from pathlib import Path
from typing import Any

from pipeline.config.job import JobConfig
from pipeline.dataset.manifest import package_versions
from pipeline.dataset.records import PAIR_SCHEMA
from pipeline.generation.backends.base import Generator
from pipeline.generation.stages import TokenCount
from pipeline.prompts.library import PromptLibrary


def token_report(tokens: TokenCount, kept: int) -> dict[str, Any]:
    """Prompt tokens, how many the prefix cache served, and what a kept pair cost."""
    return {
        "prompt": tokens.prompt,
        "prompt_cached": tokens.cached,
        "completion": tokens.completion,
        "uncached_prompt_per_kept_pair": round(tokens.uncached / kept, 1) if kept else None,
        "stages": tokens.stages,
    }


def version_manifest(
    config: JobConfig,
    library: PromptLibrary,
    generator: Generator,
    version_dir: Path,
    parent: list[Path],
    started_at: str,
) -> dict[str, Any]:
    """The manifest's fixed part: what made the version (counts are added by the run)."""
    return {
        "name": config.name,
        "version": version_dir.name,
        "parent_version": parent[-1].name if parent else None,
        "status": "complete",
        "started_at": started_at,
        "model": generator.model,
        "engine": generator.settings.as_dict() if generator.settings else None,
        "seed": config.seed,
        "config_hash": config.fingerprint(),
        "template_hashes": {t.type: library.task(t.type).template_hash for t in config.tasks},
        "output_dir": str(version_dir.parent),
        "config": config.model_dump(mode="json"),
        "packages": package_versions(),
        "schema": {f.name: str(f.type) for f in PAIR_SCHEMA},
    }
