"""Whether two dataset versions hold the same data: pairs (every column, rows by pair id),
rejects (every column, in order) and the manifest's counts and funnel. For a change that
must not change output: run the same job before and after it, then compare the versions.

    python bench/same_dataset.py out-before/demo/v0001 out-after/demo/v0001
"""

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

MANIFEST_KEYS = ("counts", "funnel", "job_fingerprint", "template_hashes", "config_hash")


def _rows(folder: Path) -> list[dict[str, Any]]:
    return pq.read_table(folder).to_pylist() if folder.is_dir() else []


def compare(before: Path, after: Path) -> list[str]:
    """The differences, one line each (none: the same dataset)."""
    found = []
    pairs = [sorted(_rows(v / "data"), key=lambda r: r["pair_id"]) for v in (before, after)]
    if pairs[0] != pairs[1]:
        ids = [{r["pair_id"] for r in p} for p in pairs]
        found.append(
            f"pairs differ: {len(pairs[0])} vs {len(pairs[1])} rows, "
            f"{len(ids[0] ^ ids[1])} pair ids in one only"
        )
    if _rows(before / "rejects") != _rows(after / "rejects"):
        found.append("rejects differ")
    manifests = [json.loads((v / "manifest.json").read_text()) for v in (before, after)]
    for key in MANIFEST_KEYS:
        if manifests[0].get(key) != manifests[1].get(key):
            found.append(f"manifest {key} differs")
    return found


def main() -> None:
    before, after = map(Path, sys.argv[1:3])
    found = compare(before, after)
    rows = len(_rows(before / "data"))
    print(f"{before} vs {after}: {rows} pairs; " + ("same" if not found else "; ".join(found)))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
