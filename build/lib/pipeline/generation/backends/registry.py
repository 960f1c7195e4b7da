"""The one place a generation backend is named: `generator.backend` in a job config picks a
module here, and both executors (the local run and each Ray engine actor) open it through
`open_backend`, so a new backend is one module and one line of BACKENDS.

A backend module provides `check(config)` (what can fail on the user's input, run before
anything loads) and `open_backend(config, opening)` returning a `Generator`
(pipeline.generation.backends.base). Modules are imported only when a job uses them: the
engine's packages cost seconds to import.
"""

import importlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the config imports this module for BACKENDS
    from pipeline.config.job import JobConfig
    from pipeline.generation.backends.base import Generator

BACKENDS = {
    "vllm": "pipeline.generation.backends.vllm_offline",
    "openai": "pipeline.generation.backends.openai_server",
}


@dataclass
class Opening:
    """What opening a backend may use: a line to the user, the run's exit stack (what the
    backend starts, such as a launched server, lives until the run ends), the version's
    logs folder and the engine log the engine's own output goes to (None: the console)."""

    say: Callable[[str], None] = lambda line: None
    stack: ExitStack = field(default_factory=ExitStack)
    logs: Path | None = None
    engine_log: Path | None = None


def check_backend(config: "JobConfig") -> None:
    """The backend's own checks of the config (a model folder that is no model, ...)."""
    importlib.import_module(BACKENDS[config.generator.backend]).check(config)


def open_backend(config: "JobConfig", opening: Opening) -> "Generator":
    """The job's generator, opened by the module of its `generator.backend`."""
    module = importlib.import_module(BACKENDS[config.generator.backend])
    return module.open_backend(config, opening)
