"""`executor: ray` on a real Ray cluster this module starts on 127.0.0.1 (`ray start
--head`, token authentication on), with the tiny Qwen3 on CPU engine actors: the dataset
equals the local executor's on the same input and seed, row for row, including query dedup
across batches and mined negatives, even when an engine actor is killed mid-job (Ray
restarts it; each request is generated once); a cluster that cannot be reached is
one line, exit 2, nothing written.

Ray refuses a second node on the loopback (it sends nodes to the host's own address, which
tests must not use), so the cluster is one node with two CPUs: one per engine actor.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ENGINE, NO_QUALITY_FILTERS, SAMPLE_CORPUS, SEED, cli, write_jsonl

from pipeline.config.job import load_config
from pipeline.run.job import run_job

RAY = Path(sys.executable).with_name("ray")
# Ray reads these once per process, when it is first imported (the session's vLLM engine
# can import it before any fixture of this module runs), so they are set at collection:
# every Ray process keeps to the loopback, and the cluster takes a token of the tests' own.
TOKEN = Path(tempfile.mkdtemp(prefix="embsynth-ray-")) / "token"
TOKEN.write_text(secrets.token_hex(32), encoding="utf-8")
os.environ.update(
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(TOKEN)
)
RAY_FILES = Path(tempfile.gettempdir()) / "ray"  # Ray's own folder: sessions, logs, metadata
# Credentials in the driver's environment that must travel nowhere (see the first test).
PLANTED = {"HF_TOKEN": "hf_planted" + secrets.token_hex(8), "VLLM_API_KEY": secrets.token_hex(9)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A running Ray cluster on 127.0.0.1 with token authentication; its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(RAY), "start", "--head", f"--port={port}", "--num-cpus=2", "--block"]
    flags = ["--include-dashboard=false", "--disable-usage-stats"]
    # --block: the command stays up while the cluster does and takes it down when stopped
    # (faster than `ray stop`, and it touches no other Ray on the machine).
    head = subprocess.Popen(
        command + flags,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while head.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        assert head.poll() is None, "ray start --head exited"
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        head.wait(timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 documents, then copies of the 2nd and 5th (same id and text: the same plan and
    so the same query) in the last batch, for the query dedup across batches."""
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    rows = rows[:12]
    return write_jsonl(
        tmp_path_factory.mktemp("corpus") / "corpus.jsonl", [*rows, rows[1], rows[4]]
    )


def job(folder: Path, corpus: Path, model: Path, **extra: Any) -> Path:
    """Three families, dedup on (documents' off, so the copies reach the query dedup),
    negatives mined with the bundled MiniLM."""
    config = {
        "name": "t",
        "seed": SEED,
        "input": {"path": str(corpus), "batch_size": 4},
        "tasks": [{"type": "retrieval"}, {"type": "classification"}, {"type": "sts"}],
        "languages": {"query": ["en", "de"]},
        "generator": {"model": str(model), "engine": ENGINE},
        "filters": NO_QUALITY_FILTERS,
        "dedup": {"documents": {"exact": False, "near": False}},
        "output": {"dir": str(folder / "out"), "shard_size": 10},
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def rows(version: Path) -> dict[str, dict[str, Any]]:
    table = pq.read_table(sorted((version / "data").glob("*.parquet")))
    return {row["pair_id"]: row for row in table.to_pylist()}


def to_float_precision(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its scores compared to float32 precision, every other column exactly:
    an embedder's score depends in its last bits on the batch it was encoded with (padding
    length), and a retried batch on a restarted actor is encoded beside other texts."""

    def near(value: Any) -> Any:
        return pytest.approx(value, rel=1e-5, abs=1e-6) if isinstance(value, float) else value

    return {
        column: [near(v) for v in value] if isinstance(value, list) else near(value)
        for column, value in row.items()
    }


def cache_keys(version: Path) -> list[str]:
    """Every stored request key, once per time it was generated."""
    return [
        json.loads(line)["key"]
        for segment in sorted((version / "cache").glob("seg-*.jsonl"))
        for line in segment.read_text(encoding="utf-8").splitlines()
    ]


@pytest.fixture(scope="module")
def local_run(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path, tiny_model: Path, generator: Any
) -> Path:
    """The local executor's dataset of the job (the session's engine)."""
    folder = tmp_path_factory.mktemp("local")
    summary = run_job(load_config(job(folder, corpus, tiny_model)), generator, progress=False)
    manifest = json.loads((summary.version_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["rejected"]["dedup"] == {"exact_duplicate": 2}
    return summary.version_dir


@pytest.mark.faults  # a Ray cluster, two engines, one killed: minutes, so `make faults`
def test_ray_dataset_equals_the_local_one_even_with_an_engine_actor_killed(
    tmp_path: Path,
    cluster: str,
    corpus: Path,
    tiny_model: Path,
    local_run: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two engine actors; after the first batch is back one is SIGKILLed: Ray restarts it,
    retries its batches, and the restarted actor answers what it had finished from the
    cache. Credentials in the driver's environment reach no file of the version nor of
    Ray's. (One run for all three claims: each engine start costs half a minute here.)"""
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    killed: list[int] = []

    def kill_an_engine(step: str, done: int) -> None:
        if step != "filter" or killed:
            return
        for process in psutil.process_iter(["cmdline"]):
            if "EngineActor" in " ".join(process.info["cmdline"] or []):
                process.kill()
                killed.append(process.pid)
                return

    config = load_config(
        job(tmp_path, corpus, tiny_model, executor="ray", ray={"address": cluster, "engines": 2})
    )
    summary = run_job(config, progress=False, quiet_engine=True, listener=kill_an_engine)
    assert killed, "no engine actor process was found to kill"
    expected, got = rows(local_run), rows(summary.version_dir)
    assert len(expected) >= 8 and sorted(got) == sorted(expected)  # the same plans
    planned = ("doc_id", "task", "language")
    assert {k: [r[c] for c in planned] for k, r in got.items()} == {
        k: [r[c] for c in planned] for k, r in expected.items()
    }
    assert any(row["negatives"] for row in got.values())
    manifest = json.loads((summary.version_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["executor"] == "ray" and manifest["engine"]["device"] == "cpu"
    local_manifest = json.loads((local_run / "manifest.json").read_text(encoding="utf-8"))
    # Every column (queries, scores, mined negatives) and the funnel, where the CPU's
    # kernels are batch-invariant (the AVX2 machines here): on AVX-512/AMX two engines
    # batch other prompts together than one does, and the tiny model's flat logits then
    # sample other tokens, so there only what the plans fix is compared.
    texts = [c for c, v in next(iter(expected.values())).items() if isinstance(v, str | list)]
    invariant = all(got[k][c] == row[c] for k, row in expected.items() for c in texts)
    if invariant:
        assert got == {key: to_float_precision(row) for key, row in expected.items()}
        assert manifest["counts"]["rejected"]["dedup"] == {"exact_duplicate": 2}
        assert manifest["funnel"] == local_manifest["funnel"]
    # both actors wrote cache segments of their own, and no request was generated twice
    writers = {p.name.split("-")[1] for p in (summary.version_dir / "cache").glob("seg-*")}
    assert writers == {"a0", "a1"}
    keys = cache_keys(summary.version_dir)
    assert len(keys) == len(set(keys))
    assert set(keys) == set(cache_keys(local_run)) or not invariant  # later prompts hold answers
    files = [p for folder in (summary.version_dir, RAY_FILES) for p in folder.rglob("*")]
    assert len(files) > 20
    leaked = [
        str(p)
        for p in files
        if p.is_file() and not p.is_socket()
        and any(v.encode() in p.read_bytes() for v in PLANTED.values())
    ]  # fmt: skip
    assert not leaked


def test_an_unreachable_cluster_is_one_line_and_nothing_is_written(
    tmp_path: Path, corpus: Path, tiny_model: Path
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    path = job(tmp_path, corpus, tiny_model, executor="ray", ray={"address": address})
    result = cli("run", path)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot reach the Ray cluster at {address}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_ray_settings_are_checked(tmp_path: Path, corpus: Path, tiny_model: Path) -> None:
    path = job(tmp_path, corpus, tiny_model, executor="ray", ray={"engine": 2})
    result = cli("run", path)
    assert result.exit_code == 2 and "unknown key 'ray.engine'" in result.stderr
    path = job(tmp_path, corpus, tiny_model, executor="ray", ray={"address": "nowhere"})
    result = cli("run", path)
    assert result.exit_code == 2 and "ray.address must be host:port or auto" in result.stderr
    path = job(
        tmp_path,
        corpus,
        tiny_model,
        executor="ray",
        ray={"tensor_parallel_size": 2, "gpus_per_engine": 1},
    )
    result = cli("run", path)
    assert result.exit_code == 2 and "gpus_per_engine must be at least" in result.stderr
