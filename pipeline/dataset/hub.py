"""A version folder as a Hugging Face dataset, as it stands: the card's YAML metadata
block names the two configs (`pairs`, the default, from `data/`; `rejects` from
`rejects/`), so `datasets.load_dataset(version_dir)` reads the pairs and never the request
cache, the state or the logs beside them; and the files `embsynth push` sends.

Why a metadata block rather than a loading script: the Hub and `load_dataset` read it
without running code, and the same folder works uploaded or local.
"""

from pathlib import Path
from typing import Any

import yaml

from pipeline.config.errors import UserError

# What a published version holds; the rest (cache/, state/, logs/) is how it was made.
PUBLISHED = ("README.md", "data", "rejects", "plots")
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))  # fmt: skip


def size_category(rows: int) -> str:
    """The Hub's size bucket of a dataset of `rows` pairs."""
    return next((name for bound, name in SIZES if rows < bound), "10M<n<100M")


def metadata(manifest: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    """The card's metadata: configs, languages, task categories, size, tags, license."""
    config = manifest.get("config") or {}
    license_ = (config.get("output") or {}).get("license")
    pairs = {"split": "train", "path": "data/*.parquet"}
    rejects = {"split": "train", "path": "rejects/*.parquet"}
    configs: list[dict[str, Any]] = [
        {"config_name": "pairs", "default": True, "data_files": [pairs]}
    ]
    counts = manifest["counts"]
    if any(sum(reasons.values()) for reasons in counts.get("rejected", {}).values()):
        # `datasets` cannot load a split of no rows: a version without rejects has no config
        configs.append({"config_name": "rejects", "data_files": [rejects]})
    block: dict[str, Any] = {
        "configs": configs,
        "language": sorted(languages),
        "task_categories": ["sentence-similarity", "text-retrieval"],
        "size_categories": [size_category(counts["kept"])],
        "tags": ["sentence-transformers", "synthetic", "embsynth"],
    }
    if license_:
        block["license"] = license_
    return block


def front_matter(manifest: dict[str, Any], languages: list[str]) -> str:
    """The metadata as the card's opening `---` block."""
    text = yaml.safe_dump(metadata(manifest, languages), sort_keys=False, allow_unicode=True)
    return f"---\n{text}---\n"


def published_files(version: Path) -> list[Path]:
    """Every file `embsynth push` sends, relative to the version: the card, the pairs, the
    rejects and the plots; no hidden temp files."""
    found: list[Path] = []
    for name in PUBLISHED:
        path = version / name
        if path.is_file():
            found.append(Path(name))
        elif path.is_dir():
            found += sorted(
                p.relative_to(version)
                for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )
    return found


def push_version(version: Path, repo_id: str, dry_run: bool, private: bool = False) -> list[Path]:
    """Upload a finished version's published files to the dataset repository `repo_id`
    (created if missing) and return them; with `dry_run`, only return them. The token is
    the environment's (HF_TOKEN, or huggingface_hub's own login), never an argument, so it
    stays out of shell history and logs."""
    if not (version / "manifest.json").is_file():
        raise UserError(f"{version}: not a finished dataset version (no manifest.json)")
    files = published_files(version)
    if dry_run:
        return files
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=version,
            repo_id=repo_id,
            repo_type="dataset",
            allow_patterns=[str(f) for f in files],
            commit_message=f"embsynth: {version.parent.name} {version.name}",
        )
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise UserError(f"push to {repo_id} failed: {exc}") from exc
    return files
