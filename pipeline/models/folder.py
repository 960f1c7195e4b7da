"""Model folders are written whole or not at all.

A model is saved into a hidden sibling folder and renamed into place, so a crash mid-save
never leaves a folder that looks like a usable model (vLLM and transformers would try to
load it and fail far from the cause).
"""

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_atomically(out: Path, save: Callable[[Path], Any]) -> Path:
    """Call `save(tmp)` on a fresh temp folder, then rename it to `out` (replacing it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def save_pretrained_atomically(out: Path, *parts: Any) -> Path:
    """Save a model and its tokenizer (anything with `save_pretrained`) into `out` whole."""
    return save_atomically(out, lambda folder: [part.save_pretrained(folder) for part in parts])
