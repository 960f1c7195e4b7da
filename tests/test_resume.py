"""Production runs: a killed job resumes to the dataset an uninterrupted run makes, reusing
every generation it had stored; a rerun of a finished job generates nothing; one run per
dataset at a time; SIGTERM takes the engine's processes down with the job.

The kill and SIGTERM tests run `embsynth run` as a real subprocess with its own engine and
signal it; the rest reuse the session's engine."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.errors import DatasetBusy, NothingToDo
from pipeline.config.job import load_config
from pipeline.dataset.card import manifest_of
from pipeline.run.job import run_job
from tests.conftest import assert_resumed_as_whole, stored_results

EMBSYNTH = [sys.executable, "-m", "pipeline.cli.app"]
# A process that takes a dataset's lock, says so, and holds it until it is killed.
HOLD_LOCK = (
    "import sys, time; from pathlib import Path; from pipeline.dataset.lock import dataset_lock\n"
    "with dataset_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True); time.sleep(120)\n"
)


def job(job_file: Callable[..., Path], out: Path, checkpoint_minutes: float = 15) -> Path:
    """The test job writing to `out`, in its own file beside `out`; a checkpoint every
    `checkpoint_minutes` (0: after every batch), semantic dedup past its graph's size
    (`exact_below`) and near dedup on: state a checkpoint carries."""
    from tests.conftest import SAMPLE_CORPUS

    path = job_file(
        input={"path": str(SAMPLE_CORPUS), "batch_size": 6},
        output={"dir": str(out), "shard_size": 10, "checkpoint_minutes": checkpoint_minutes},
        embedder={"exact_below": 8},
    )
    return path.rename(out.with_name(f"{out.name}.yaml"))


def rows(version: Path) -> list[dict[str, Any]]:
    return pq.read_table(version / "data").to_pylist()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def killed_once(path: Path, limit: int, ready: Callable[[], bool], what: str) -> None:
    """Start `embsynth run` on the job at `path` in its own process; SIGKILL it once
    `ready()` says so."""
    process = subprocess.Popen(
        [*EMBSYNTH, "run", str(path), "--limit", str(limit)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(ready, 240, what)
    finally:
        process.kill()
        process.wait()


def test_a_killed_run_resumes_to_the_uninterrupted_dataset(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    whole_job = job(job_file, tmp_path / "whole")
    whole = run_job(load_config(whole_job), generator=generator, limit=24, progress=False)

    killed_out = tmp_path / "killed"
    killed_job = job(job_file, killed_out)
    cache = killed_out / "t" / ".v0001.partial" / "cache"
    # SIGKILL once the first batch's generations are stored
    killed_once(killed_job, 24, lambda: any(cache.glob("seg-*.jsonl")), "the first cached batch")
    assert not (killed_out / "t" / "v0001").exists()
    stored = stored_results(cache)  # what the killed run had paid for

    resumed = run_job(load_config(killed_job), generator=generator, limit=24, progress=False)
    assert resumed.version_dir.name == "v0001"
    assert not list(resumed.version_dir.parent.glob(".*.partial"))
    # Every stored generation is reused as it was; only the rest is generated.
    assert resumed.requests_cached == len(stored) > 0 and resumed.requests_generated > 0
    final = stored_results(resumed.version_dir / "cache")
    assert all(final[key] == result for key, result in stored.items())
    assert len(final) == resumed.requests_cached + resumed.requests_generated  # none twice
    manifest = json.loads((resumed.version_dir / "manifest.json").read_text())
    assert manifest["requests"] == {"generated": resumed.requests_generated,
                                    "cached": resumed.requests_cached}  # fmt: skip
    # The resumed version is whole: every document read, every one kept or rejected once.
    counts = manifest["counts"]
    rejected = sum(sum(r.values()) for s, r in counts["rejected"].items() if s != "read")
    assert counts["read"]["documents"] == 24 == counts["kept"] + rejected
    assert len(rows(resumed.version_dir)) == counts["kept"]
    # Another process was killed, this one resumed: the uninterrupted run's requests, and
    # its dataset (same pair ids, rows and order) wherever the generations agree.
    assert resumed.requests_cached + resumed.requests_generated == whole.requests_generated
    assert_resumed_as_whole(resumed.version_dir, whole.version_dir)


def test_a_run_killed_after_a_checkpoint_goes_on_from_it(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    whole_config = load_config(job(job_file, tmp_path / "whole"))
    whole = run_job(whole_config, generator=generator, limit=36, progress=False)
    killed_out = tmp_path / "killed"
    killed_job, staging = job(job_file, killed_out, 0), killed_out / "t" / ".v0001.partial"
    # SIGKILL once a checkpoint is whole (one is saved after every batch)
    whole_one = lambda: any(staging.glob("progress/checkpoint-*/done.json"))  # noqa: E731
    killed_once(killed_job, 36, whole_one, "a whole checkpoint")
    assert not (killed_out / "t" / "v0001").exists()
    done = sorted(staging.glob("progress/checkpoint-*/done.json"))  # the newest goes on
    checkpoint = json.loads(done[-1].read_text())
    assert 6 <= checkpoint["documents"] < 36

    # A copy whose checkpoint a kill tore (no done.json) resumes from the cache alone.
    torn = tmp_path / "torn"
    shutil.copytree(killed_out, torn)
    for path in done:
        (torn / "t" / ".v0001.partial" / path.relative_to(staging)).unlink()
    torn_job = job(job_file, torn, checkpoint_minutes=0)
    from_cache = run_job(load_config(torn_job), generator=generator, limit=36, progress=False)
    assert "resumed_from_checkpoint" not in manifest_of(from_cache.version_dir)

    resumed = run_job(load_config(killed_job), generator=generator, limit=36, progress=False)
    manifest = manifest_of(resumed.version_dir)
    # It went on from the checkpoint: the batches it covered were not read, planned,
    # filtered or deduplicated again, and every count is still the whole run's.
    assert manifest["resumed_from_checkpoint"] == {"documents": checkpoint["documents"]}
    counts = manifest["counts"]
    rejected = sum(sum(r.values()) for s, r in counts["rejected"].items() if s != "read")
    assert counts["read"]["documents"] == 36 == counts["kept"] + rejected
    assert [f["in"] for f in manifest["funnel"]][:2] == [36, 36]
    assert len(rows(resumed.version_dir)) == counts["kept"]
    assert resumed.requests_cached + resumed.requests_generated == whole.requests_generated
    shards = [s["path"] for s in manifest["files"]["data"] + manifest["files"]["rejects"]]
    on_disk = [p.relative_to(resumed.version_dir).as_posix()
               for p in resumed.version_dir.glob("*/part-*.parquet")]  # fmt: skip
    assert sorted(shards) == sorted(on_disk)  # none a killed part wrote past the checkpoint
    assert not (resumed.version_dir / "progress").exists()
    whole_dir = whole.version_dir
    for version in (resumed.version_dir, from_cache.version_dir):
        assert_resumed_as_whole(version, whole_dir)
        if stored_results(version / "cache") == stored_results(whole_dir / "cache"):
            state = [pq.read_table(v / "state" / "queries.parquet") for v in (version, whole_dir)]
            assert state[0].equals(state[1])  # the kept queries: none twice, none lost


def test_a_rerun_of_a_finished_job_generates_nothing(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = job(job_file, tmp_path / "out")
    first = run_job(load_config(path), generator=generator, limit=6, progress=False)
    with pytest.raises(NothingToDo, match="already complete"):
        run_job(load_config(path), generator=generator, limit=6, progress=False)
    result = CliRunner().invoke(app, ["run", str(path), "--limit", "6"])
    assert result.exit_code == 0 and "nothing generated" in result.output
    written = sorted(p.name for p in first.version_dir.parent.iterdir())
    assert [name for name in written if name != "state"] == ["v0001"]  # state: corpus vectors


def test_one_run_per_dataset_and_a_dead_holders_lock_is_taken_over(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = job(job_file, tmp_path / "out")
    root = tmp_path / "out" / "t"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(DatasetBusy, match=f"pid {holder.pid}"):
            run_job(load_config(path), generator=generator, limit=4, progress=False)
        result = CliRunner().invoke(app, ["run", str(path), "--limit", "4"])
        assert result.exit_code == 3 and "another run" in result.output
    finally:
        holder.kill()  # SIGKILL: its lock file stays, the kernel's lock goes
        holder.wait()
    assert (root / ".lock").exists()
    summary = run_job(load_config(path), generator=generator, limit=4, progress=False)
    assert summary.version_dir.name == "v0001" and not (root / ".lock").exists()


@pytest.mark.faults  # engine and server starts killed: `make faults`, after `make test` in CI
@pytest.mark.parametrize("runner", ["multiprocess engine", "launched server"])
def test_sigterm_stops_the_engine_processes_with_the_job(
    runner: str, job_file: Callable[..., Path], tmp_path: Path, tiny_model: Path
) -> None:
    from tests.conftest import ENGINE, SAMPLE_CORPUS
    from tests.test_server_backend import free_port

    env = dict(os.environ)
    generator: dict[str, Any] = {"model": str(tiny_model), "engine": ENGINE}
    if runner == "multiprocess engine":
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"  # the engine in child processes
    else:
        port = free_port()
        generator |= {"backend": "openai", "server": {
            "launch": True, "port": port, "base_url": f"http://127.0.0.1:{port}/v1"}}  # fmt: skip
    path = job_file(
        input={"path": str(SAMPLE_CORPUS), "batch_size": 6},
        generator=generator,
        output={"dir": str(tmp_path / "out")},
    )
    process = subprocess.Popen(
        [*EMBSYNTH, "run", str(path), "--limit", "36"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(process.pid)
    cache = tmp_path / "out" / "t" / ".v0001.partial" / "cache"
    try:
        wait_for(lambda: any(cache.glob("seg-*.jsonl")), 240, "the first cached batch")
        engine = parent.children(recursive=True)
        assert engine, "the engine runs in child processes"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    _, alive = psutil.wait_procs(engine, timeout=30)
    assert not alive, [p.pid for p in alive]
    assert process.returncode == 128 + signal.SIGTERM
    assert (tmp_path / "out" / "t" / ".v0001.partial").is_dir()  # left resumable
