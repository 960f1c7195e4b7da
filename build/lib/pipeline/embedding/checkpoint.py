"""The trainer's checkpoints and log, kept so that a `kill -9` at any moment leaves a run
that `embsynth train --resume` continues to the weights an uninterrupted run makes.

A module of its own because all of it is about surviving a kill, which the training loop
should not have to read around:

- A checkpoint is built in a hidden temp folder beside the others, fsynced, and renamed to
  `step-NNNNNN` (pipeline.models.folder). Only folders under that name count, so a kill
  mid-save leaves a hidden folder that is ignored and cleared at the next save or resume,
  never a checkpoint that fails to load on every resume. Pruning hides a folder before
  deleting it, for the same reason.
- A checkpoint whose state does not load all the same (one torn by a kill before saves were
  atomic) is skipped, with a line on stderr, for the next older one.
- The log is line-buffered, so a kill tears at most its last line; a resume drops that line
  and cuts the log at the resumed step, rewriting it atomically.
"""

import json
import pickle
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import torch

from pipeline.dataset.writer import atomic_path
from pipeline.models.folder import remove_folder, save_atomically

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
LOG_FILE = "train_log.jsonl"
STEP_DIR = re.compile(r"^step-\d{6,}$")


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. The state file check keeps out folders that
    saves before this module left between the model and its state."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def save(
    output_dir: Path,
    step: int,
    write_model: Callable[[Path], object],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoints/step-NNNNNN whole (the model `write_model` writes into a folder, plus
    the trainer `state`), then keep only the newest `keep` checkpoints."""
    root = output_dir / CHECKPOINTS
    clear_leftovers(root)

    def write(folder: Path) -> None:
        write_model(folder)
        torch.save(state, folder / STATE_FILE)

    folder = save_atomically(root / f"step-{step:06d}", write)
    for old in checkpoints(output_dir)[:-keep]:
        remove_folder(old)
    return folder


def load_newest(output_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose state loads, with that state; None: start over."""
    clear_leftovers(output_dir / CHECKPOINTS)
    for folder in reversed(checkpoints(output_dir)):
        try:
            return folder, torch.load(folder / STATE_FILE, weights_only=False, map_location="cpu")
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            print(f"skipping {folder}: its trainer state does not load ({error})", file=sys.stderr)
    return None


def clear_leftovers(root: Path) -> None:
    """Remove the hidden folders a killed save or prune left in the checkpoints folder."""
    if root.is_dir():
        for leftover in root.glob(".step-*"):
            shutil.rmtree(leftover)


def open_log(output_dir: Path, append: bool) -> TextIO:
    """The training log, line-buffered: each step's line reaches the file as it is written."""
    return (output_dir / LOG_FILE).open("a" if append else "w", encoding="utf-8", buffering=1)


def cut_log(output_dir: Path, step: int) -> None:
    """Keep the log's lines up to `step`, so a resumed run repeats none, and drop a torn last
    line (the one a kill cut off before its newline)."""
    path = output_dir / LOG_FILE
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    whole = text[: text.rfind("\n") + 1].splitlines()
    kept = [line for line in whole if json.loads(line)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
