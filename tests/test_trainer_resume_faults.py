"""The trainer survives `kill -9`: what a kill leaves behind (a torn last log line, a
checkpoint whose trainer state was cut off mid-write) resumes to the weights of an
uninterrupted run, and a real `embsynth train` killed at seeded moments and resumed until
done ends with those weights too."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pipeline.embedding.checkpoint import checkpoints
from pipeline.embedding.train_config import load_train_config
from pipeline.embedding.trainer import Trainer
from tests.conftest import cli

STEPS = 6
SETTINGS = {"batch_size": 8, "max_steps": STEPS, "save_every": 2, "max_length": 64, "seed": 3}
KILLED_STEPS = 30  # the real-process kill test's run


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after the raise runs, no `except` takes it."""


def train_yaml(folder: Path, model: Path, data: Path, **overrides: Any) -> Path:
    """A training config in `folder` that trains into `folder/run`."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"model": str(model), "data": [str(data)], "output_dir": "run"}
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(settings | SETTINGS | overrides))
    return path


@pytest.fixture(scope="module")
def straight(
    tiny_encoder: Path, title_pairs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The output folder of an uninterrupted run (checkpoints at steps 2, 4 and 6)."""
    path = train_yaml(tmp_path_factory.mktemp("straight"), tiny_encoder, title_pairs)
    done = cli("train", path)
    assert done.exit_code == 0, done.output
    return path.parent / "run"


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def assert_same_weights(run: Path, straight: Path, atol: float = 1e-6) -> None:
    ours, theirs = final_weights(run), final_weights(straight)
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert torch.allclose(ours[name], value, atol=atol, rtol=0), name


def log_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def killed_copy(straight: Path, folder: Path, model: Path, data: Path) -> Path:
    """The straight run copied into `folder` without its final model, as a run killed
    before the end leaves it; returns the config."""
    path = train_yaml(folder, model, data)
    shutil.copytree(straight, folder / "run", ignore=shutil.ignore_patterns("final"))
    return path


def test_a_torn_last_log_line_is_dropped_on_resume(
    tiny_encoder: Path, title_pairs: Path, straight: Path, tmp_path: Path
) -> None:
    path = killed_copy(straight, tmp_path, tiny_encoder, title_pairs)
    run = tmp_path / "run"
    # Killed while writing step 5's log line: checkpoint 4 is the newest.
    shutil.rmtree(run / "checkpoints" / "step-000006")
    log = (run / "train_log.jsonl").read_text()
    fifth = log.index('{"step": 5')
    (run / "train_log.jsonl").write_text(log[: fifth + 12])
    done = cli("train", path, "--resume")
    assert done.exit_code == 0, done.output
    assert "resuming at step 4 of 6" in done.stdout
    assert log_steps(run) == list(range(1, STEPS + 1))
    assert (run / "train_log.jsonl").read_text() == (straight / "train_log.jsonl").read_text()
    assert_same_weights(run, straight)


def test_a_save_killed_mid_write_leaves_no_checkpoint(
    tiny_encoder: Path,
    title_pairs: Path,
    straight: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_save = torch.save
    saves = []

    def save_then_die_midway(state: Any, path: Path) -> None:
        """The second save (step 4) is killed after half of its bytes reach the disk."""
        saves.append(path)
        if len(saves) < 2:
            return real_save(state, path)
        real_save(state, path)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise Killed

    path = train_yaml(tmp_path, tiny_encoder, title_pairs)
    trainer = Trainer(load_train_config(path))
    monkeypatch.setattr(torch, "save", save_then_die_midway)
    with pytest.raises(Killed):
        trainer.train()
    monkeypatch.undo()
    run = tmp_path / "run"
    assert [p.name for p in checkpoints(run)] == ["step-000002"]  # the torn one does not count

    resumed = Trainer(load_train_config(path))
    assert resumed.resume() == 2
    resumed.train()
    assert [p.name for p in checkpoints(run)] == ["step-000002", "step-000004", "step-000006"]
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert log_steps(run) == list(range(1, STEPS + 1))
    assert_same_weights(run, straight)


def test_a_torn_trainer_state_falls_back_to_the_newest_whole_checkpoint(
    tiny_encoder: Path, title_pairs: Path, straight: Path, tmp_path: Path
) -> None:
    # What a kill during torch.save left inside the checkpoint before saves were atomic.
    path = killed_copy(straight, tmp_path, tiny_encoder, title_pairs)
    state = tmp_path / "run" / "checkpoints" / "step-000006" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    done = cli("train", path, "--resume")
    assert done.exit_code == 0, done.output
    assert "resuming at step 4 of 6" in done.stdout
    assert "step-000006" in done.stderr  # says which checkpoint it skipped
    torch.load(state, weights_only=False)  # written again, whole
    assert log_steps(tmp_path / "run") == list(range(1, STEPS + 1))
    assert_same_weights(tmp_path / "run", straight)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None, f"train exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def newest_step(run: Path) -> int:
    found = checkpoints(run)
    return int(found[-1].name.removeprefix("step-")) if found else 0


def saving(run: Path) -> bool:
    """A checkpoint is being written: its hidden temp folder is there."""
    return any((run / "checkpoints").glob(".step-*.tmp"))


@pytest.mark.faults  # kills of training processes: about 2 minutes here, run by `make faults`
def test_train_killed_at_seeded_moments_resumes_to_the_same_weights(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    # Five epochs, a checkpoint a step: long enough that each kill finds the run alive on a
    # fast CPU (on a Xeon with AMX six steps ended before the next checkpoint's write).
    longer = {"max_steps": KILLED_STEPS, "epochs": 5}
    straight = train_yaml(tmp_path / "straight", tiny_encoder, title_pairs, **longer)
    assert cli("train", straight).exit_code == 0
    path = train_yaml(tmp_path, tiny_encoder, title_pairs, save_every=1, **longer)
    run = tmp_path / "run"
    rng = random.Random(5)
    # Each process is killed once it has written a checkpoint of its own: one while it
    # writes its next checkpoint, one a seeded moment later (mid-step or mid-save).
    moments = rng.sample(["mid-save", "later"], 2)
    command = [sys.executable, "-m", "pipeline.cli.app", "train", str(path)]
    for kill, moment in enumerate(moments):
        start = newest_step(run)
        process = subprocess.Popen(
            command + (["--resume"] if kill else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: newest_step(run) > start, process, "a new checkpoint")  # noqa: B023
            if moment == "mid-save":
                wait_for(lambda: saving(run), process, "the next checkpoint's write")
                time.sleep(rng.uniform(0.0, 0.1))
            else:
                time.sleep(rng.uniform(0.0, 1.5))
        finally:
            process.kill()
            process.wait()
        assert process.returncode == -signal.SIGKILL
    done = cli("train", path, "--resume")  # the last resume runs here: one start-up fewer
    assert done.exit_code == 0, done.output
    assert f"trained {KILLED_STEPS} steps" in done.stdout
    assert not list((run / "checkpoints").glob(".*"))  # what the kills left is cleared
    assert log_steps(run) == list(range(1, KILLED_STEPS + 1))
    assert_same_weights(run, straight.parent / "run", atol=1e-5)
