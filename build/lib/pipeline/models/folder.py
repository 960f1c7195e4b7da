"""Model folders are written whole or not at all.

A model is saved into a hidden sibling folder, fsynced and renamed into place, so neither a
crash mid-save nor a power cut after it leaves a folder that looks like a usable model
(vLLM and transformers would try to load it and fail far from the cause). A folder that is
replaced or removed is first hidden by a rename, for the same reason: a kill mid-delete
leaves a hidden folder, never part of one under its name. Nothing reads hidden leftovers;
the next save or removal under the same name clears them, and the trainer clears its
checkpoints' at every save and resume.
"""

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_atomically(out: Path, save: Callable[[Path], Any]) -> Path:
    """Call `save(tmp)` on a fresh temp folder, fsync it, then rename it to `out`
    (replacing it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save(tmp)
    for path in [*tmp.rglob("*"), tmp]:
        fsync(path)
    if out.exists():
        remove_folder(out)
    tmp.rename(out)
    fsync(out.parent)
    return out


def remove_folder(folder: Path) -> None:
    """Delete `folder`, hiding it by a rename first so no kill leaves part of it behind."""
    hidden = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(hidden, ignore_errors=True)
    folder.rename(hidden)
    shutil.rmtree(hidden)


def fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def save_pretrained_atomically(out: Path, *parts: Any) -> Path:
    """Save a model and its tokenizer (anything with `save_pretrained`) into `out` whole."""
    return save_atomically(out, lambda folder: [part.save_pretrained(folder) for part in parts])
