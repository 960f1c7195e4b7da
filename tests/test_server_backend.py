"""The OpenAI-compatible server backend against a real vLLM server on 127.0.0.1 serving the
tiny Qwen3: a server that dies mid-job (the job fails cleanly, a later run that launches
and stops its own server resumes it), an unreachable server, a model the server does not
serve, and the API key taken from the environment without ever being written down."""

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline.config.errors import UserError
from pipeline.config.generator import GeneratorConfig, ServerConfig
from pipeline.config.job import load_config
from pipeline.generation.backends.server_process import launched_server
from pipeline.run.job import run_job
from tests.conftest import ENGINE, SEED


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_job(job_file: Callable[..., Path], tiny_model: Path, **server: Any) -> Path:
    return job_file(
        input={"path": str(Path(__file__).parent.parent / "pipeline/data/sample_corpus.jsonl"),
               "batch_size": 6},
        generator={"backend": "openai", "model": str(tiny_model), "engine": ENGINE,
                   "server": {"retries": 1, "backoff": 0.05, **server}},
    )  # fmt: skip


@pytest.fixture
def server(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[str, ExitStack]]:
    """A vLLM server on a free port; close the returned stack to stop it early."""
    port = free_port()
    config = GeneratorConfig(
        model=str(tiny_model), engine=ENGINE, server=ServerConfig(port=port, launch=True)
    )
    with ExitStack() as stack:
        stack.enter_context(launched_server(config, SEED, tmp_path / "server.log"))
        yield f"http://127.0.0.1:{port}/v1", stack


@pytest.mark.faults  # minutes of server starts: `make faults`, after `make test` in CI
def test_a_server_that_dies_mid_job_fails_cleanly_and_a_launching_job_resumes(
    job_file: Callable[..., Path],
    tiny_model: Path,
    server: tuple[str, ExitStack],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One server start per claim costs a minute here, so one test: a model the server
    does not serve, the server dying mid-job, and the resume by a job that launches its own
    server (with an API key from the environment) and stops it."""
    url, stack = server
    unknown = server_job(job_file, tiny_model, base_url=url, served_model="no-such-model")
    with pytest.raises(UserError, match="HTTP 404"):
        run_job(load_config(unknown), limit=3, out_dir=tmp_path / "other", progress=False)

    path = server_job(job_file, tiny_model, base_url=url, served_model=str(tiny_model))
    root = tmp_path / "out" / "t"
    done: dict[str, int] = {}

    def stop_after_first_batch(step: str, n: int) -> None:  # the listener sees increments
        done[step] = done.get(step, 0) + n
        if step == "query" and done[step] >= 6:
            stack.close()  # the server goes away after the first batch

    with pytest.raises(UserError, match="cannot reach the server"):
        run_job(load_config(path), limit=18, progress=False, listener=stop_after_first_batch)
    staging = root / ".v0001.partial"
    assert staging.is_dir() and not (root / "v0001").exists()  # visibly unfinished
    assert not (staging / "manifest.json").exists()
    assert any((staging / "cache").glob("seg-*.jsonl"))  # the first batch is kept

    port = free_port()
    monkeypatch.setenv("EMBSYNTH_TEST_KEY", "sk-test-secret-4711")
    launching = server_job(
        job_file, tiny_model, launch=True, port=port, base_url=f"http://127.0.0.1:{port}/v1",
        served_model=str(tiny_model), api_key_env="EMBSYNTH_TEST_KEY",
    )  # fmt: skip
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    resumed = run_job(load_config(launching), limit=18, progress=False)
    assert resumed.version_dir == root / "v0001" and resumed.requests_cached >= 6
    assert resumed.kept > 0 and resumed.requests_generated > 0
    assert resumed.tokens.prompt > 0 and resumed.tokens.completion > 0  # from `usage`
    assert (resumed.version_dir / "logs" / "server.log").stat().st_size > 0
    # The server is gone with the job: no new child process is left, the port is free.
    assert not {p.pid for p in psutil.Process().children(recursive=True)} - before
    with socket.socket() as probe:  # nothing listens there any more (TIME_WAIT is fine)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    for file in resumed.version_dir.rglob("*"):  # the key itself is never written anywhere
        if file.is_file():
            assert b"sk-test-secret-4711" not in file.read_bytes(), file
    monkeypatch.delenv("EMBSYNTH_TEST_KEY")
    with pytest.raises(UserError, match="EMBSYNTH_TEST_KEY"):
        run_job(load_config(launching), limit=7, progress=False)


def test_an_unreachable_server_is_one_clear_error(
    job_file: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    path = server_job(job_file, tiny_model, base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UserError, match=r"3 of 3 requests .* failed after 1 retries: cannot"):
        run_job(load_config(path), limit=3, progress=False)
    assert not list((tmp_path / "out" / "t").glob("v*"))
