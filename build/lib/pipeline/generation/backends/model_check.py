"""Fail fast on a model that cannot load, before anything is written or an engine starts."""

import json
import os
import re
from pathlib import Path

from pipeline.config.errors import UserError

HF_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model(model: str) -> None:
    """Fail fast on a model that is neither a local folder nor a hub id we could fetch."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder has no config.json: {model}")
        return
    if path.is_absolute() or not HF_MODEL_ID.match(model):
        raise UserError(f"model path does not exist: {model}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise UserError(f"model {model} is not a local folder and HF_HUB_OFFLINE=1")


def model_name(model: str, given: str | None = None) -> str:
    """The model as records, manifests and cards name it: `given` (the config's
    `generator.name`), else a model folder's own hub id (`_name_or_path` in its
    config.json) or, failing that, the folder's name; never a local path, which says
    nothing to a reader of a published dataset and tells them about the author's disk."""
    if given:
        return given
    path = Path(model)
    if not path.is_dir():
        return model  # a hub id, or the name a server serves
    try:
        recorded = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    named = recorded.get("_name_or_path") if isinstance(recorded, dict) else None
    if isinstance(named, str) and HF_MODEL_ID.match(named):
        return named
    return path.resolve().name
