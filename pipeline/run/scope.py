"""What a run covers, decided before anything is written: a resume of the unfinished
version a killed run left, a refresh (the documents no earlier version covered, and the
ones it supersedes), the documents an earlier run of the same job failed to generate, or
the whole corpus; and when there is nothing to do, NothingToDo.
"""

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from pipeline.config.errors import NothingToDo
from pipeline.config.job import JobConfig
from pipeline.corpus.survey import Survey
from pipeline.dataset.card import manifest_of
from pipeline.dataset.refresh import Superseded, covered, find_superseded
from pipeline.dataset.writer import unfinished_version, versions
from pipeline.prompts.library import PromptLibrary


@dataclass
class Scope:
    """The run's place among the dataset's versions and the documents it reads."""

    parent: list[Path]  # the complete versions before this one
    fingerprint: str
    unfinished: tuple[Path, Path] | None  # (staging, final) of a version to resume
    total: int  # documents to read, for the progress bars
    seen: set[str] = field(default_factory=set)  # keys earlier versions covered: skipped
    gone: Superseded = field(default_factory=Superseded)

    @cached_property
    def reading(self) -> str:
        """The job (its fingerprint: config, prompts, limit, corpus) and the way this run
        reads it (the documents a refresh or a retry skips as covered, and those it
        retires): two runs with the same reading make the same batches, so a checkpoint of
        one serves the other (pipeline.run.checkpoint), and a killed `run` resumed by a
        `refresh` does not take the run's. Hashed once: a refresh skips up to millions."""
        digest = hashlib.sha256(self.fingerprint.encode())
        for part in (self.seen, self.gone.ids):
            digest.update(b"\0" + "\n".join(sorted(part)).encode())
        return digest.hexdigest()[:16]


def run_scope(
    config: JobConfig,
    library: PromptLibrary,
    survey: Survey,
    root: Path,
    limit: int | None,
    refresh: bool,
) -> Scope:
    """The scope of a `run` (or, with `refresh`, a `refresh`) of the dataset at `root`,
    from the survey of its corpus (pipeline.corpus.survey: nothing here reads the corpus)."""
    parent = versions(root)
    scope = Scope(
        parent,
        job_fingerprint(config, library, limit, survey.digest),
        unfinished_version(root),
        survey.read,
    )
    if refresh:
        scope.seen = covered(parent)
        # Earlier-covered documents the corpus changed or dropped: their old pairs retire.
        scope.gone = find_superseded(survey.keys, limit is None, parent)
        if scope.unfinished is None and parent:
            scope.total = survey.new(scope.seen)
            if scope.total == 0 and not scope.gone:
                raise NothingToDo(
                    f"no new or changed documents since {parent[-1].name}: nothing written"
                )
    elif scope.unfinished is None and _same_job(parent, scope.fingerprint):
        failed = manifest_of(parent[-1])["counts"].get("failed_documents", 0)
        if not failed:
            raise NothingToDo(
                f"{parent[-1]} is already complete for this job and corpus: nothing generated"
            )
        scope.seen = covered(parent)  # generate only what failed: the documents left uncovered
        scope.total = failed
    return scope


def _same_job(parent: list[Path], fingerprint: str) -> bool:
    """Whether the newest complete version was made by this very job."""
    newest = parent[-1] / "manifest.json" if parent else None
    if newest is None or not newest.is_file():
        return False
    return manifest_of(parent[-1]).get("job_fingerprint") == fingerprint


def job_fingerprint(
    config: JobConfig, library: PromptLibrary, limit: int | None, digest: str
) -> str:
    """What makes two runs the same job: the config, the prompts (template hashes), the
    limit and the corpus content. A rerun with the same fingerprint has nothing to do."""
    templates = {task.type: library.task(task.type).template_hash for task in config.tasks}
    blob = json.dumps(
        [config.fingerprint(), templates, limit, digest],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
