"""Real processes, real faults: `embsynth run` killed with SIGKILL at ten seeded moments of
one job that saves a checkpoint after every batch, each kill resumed by the next start, ends
in the dataset an uninterrupted run makes (its pairs, and their texts where the CPU's
generation is batch-invariant); twenty `embsynth run` started at once on one dataset:
exactly one runs, the others exit 3 with one line, every time."""

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.config.job import load_config
from pipeline.run.job import run_job
from tests.conftest import SAMPLE_CORPUS, assert_resumed_as_whole

EMBSYNTH = [sys.executable, "-m", "pipeline.cli.app", "run"]
KILLS = 10
LIMIT = 60  # ten batches of six: room for ten kills in one job


# Where each event but the lock shows: a new entry matching the pattern.
EVENTS = {"segment": "cache/seg-*.jsonl", "shard": "data/*.parquet",
          "checkpoint": "progress/checkpoint-*"}  # fmt: skip


def kill_moments(seed: int = 32) -> list[tuple[str, float]]:
    """(event, seconds after it) for each kill: the lock taken (before the engine is up), a
    new request-cache segment stored, a new pair shard written, a checkpoint begun (a kill
    0-1 s later lands while it is written or after)."""
    rng = random.Random(seed)
    kinds = ["lock", "segment", "shard", "checkpoint"]
    events = rng.choices(kinds, weights=[2, 4, 2, 2], k=KILLS)
    return [(event, round(rng.uniform(0, 1.0), 2)) for event in events]


def entries(staging: Path, pattern: str = "*/*") -> set[str]:
    return {p.relative_to(staging).as_posix() for p in staging.glob(pattern)}


def event_seen(event: str, staging: Path, before: set[str], pid: int) -> bool:
    lock = staging.parent / ".lock"
    if event == "lock":
        return lock.is_file() and f'"pid": {pid},' in lock.read_text()
    return bool(entries(staging, EVENTS[event]) - before)


@pytest.mark.faults  # ten engine starts: about 6 minutes here, run by `make faults`
def test_ten_kills_of_one_job_resume_to_the_uninterrupted_dataset(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    def job(name: str) -> Path:
        return job_file(
            name=name,
            input={"path": str(SAMPLE_CORPUS), "batch_size": 6},
            output={"dir": str(tmp_path / "out"), "shard_size": 10, "checkpoint_minutes": 0},
        )

    whole = run_job(load_config(job("whole")), generator=generator, limit=LIMIT, progress=False)
    path = job("t")
    root = tmp_path / "out" / "t"
    staging = root / ".v0001.partial"
    kills = []
    for event, delay in kill_moments():
        before = entries(staging)
        process = subprocess.Popen(
            [*EMBSYNTH, str(path), "--limit", str(LIMIT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while process.poll() is None and not event_seen(event, staging, before, process.pid):
            assert time.monotonic() < deadline, f"no {event} within 300 s"
            time.sleep(0.05)
        time.sleep(delay)
        if process.poll() is not None:
            break  # the job finished before this moment came
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(event)
        # A folder named like a version is complete; a killed run leaves only staging.
        assert not (root / "v0001").exists() or (root / "v0001" / "manifest.json").is_file()
    assert len(kills) >= 6, kills
    if not (root / "v0001").exists():
        run_job(load_config(path), generator=generator, limit=LIMIT, progress=False)
    assert not list(root.glob(".*.partial")) and not (root / ".lock").exists()
    assert_resumed_as_whole(root / "v0001", whole.version_dir)
    got = pq.read_table(root / "v0001" / "data").to_pylist()
    manifest = json.loads((root / "v0001" / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == len(got) and manifest["counts"]["read"]["documents"] == 60
    assert manifest["resumed_from_checkpoint"]["documents"] >= 6  # the last part went on from one


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections and never answers: the one run that
    gets the dataset waits in generation while the others try to start."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


@pytest.mark.faults  # twenty real job processes: about 100 s here, run by `make faults`
def test_twenty_starters_on_one_dataset_exactly_one_runs(
    job_file: Callable[..., Path], tmp_path: Path, stalled_server: str
) -> None:
    path = job_file(
        generator={"backend": "openai", "model": "stalled",
                   "server": {"base_url": stalled_server, "retries": 0}},
        personas={"select": "random"},
        dedup={"exact": True, "near": {"enabled": False}, "semantic": {"enabled": False}},
        negatives={"enabled": False},
    )  # fmt: skip
    starters = [
        subprocess.Popen(
            [*EMBSYNTH, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(20)
    ]
    try:
        deadline = time.monotonic() + 900
        while sum(p.poll() is not None for p in starters) < 19:
            assert time.monotonic() < deadline, "the losers did not all exit"
            time.sleep(0.2)
        running = [p for p in starters if p.poll() is None]
        assert len(running) == 1
        lock = json.loads((tmp_path / "out" / "t" / ".lock").read_text())
        assert lock["pid"] == running[0].pid
        for loser in (p for p in starters if p is not running[0]):
            _, err = loser.communicate()
            assert loser.returncode == 3, err
            assert err.strip().count("\n") == 0 and "another run" in err
    finally:
        for process in starters:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert not (tmp_path / "out" / "t" / "v0001").exists()  # the one run was killed unfinished


def test_twenty_lock_takers_at_once_exactly_one_wins_every_time(tmp_path: Path) -> None:
    """Twenty processes released together at the lock, five rounds: one holder each round."""
    code = (
        "import os, sys, time; from pathlib import Path\n"
        "from pipeline.config.errors import DatasetBusy\n"
        "from pipeline.dataset.lock import dataset_lock\n"
        "gate = Path(sys.argv[2]); (gate.parent / f'ready-{gate.name}-{os.getpid()}').touch()\n"
        "while not gate.exists(): time.sleep(0.001)\n"
        "try:\n"
        "    with dataset_lock(Path(sys.argv[1])): time.sleep(1.0); print('won')\n"
        "except DatasetBusy: print('busy')\n"
    )
    for round_ in range(5):
        gate = tmp_path / f"gate{round_}"
        takers = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(tmp_path / "ds"), str(gate)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(20)
        ]
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob(f"ready-{gate.name}-*"))) < 20:  # all at the gate
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gate.touch()
        said = sorted(p.communicate(timeout=60)[0].strip() for p in takers)
        assert said == ["busy"] * 19 + ["won"], (round_, said)
