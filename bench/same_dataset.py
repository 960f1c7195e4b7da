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
# Scores are compared to 12 significant digits: lingua's confidence of one text can differ
# in the last bit between two calls (it sums in parallel), so a spare sample whose query
# repeats another's carries 0.8068277985223814 once and 0.8068277985223811 the next time.
DIGITS = 12


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{DIGITS}g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _rows(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    return [{k: _rounded(v) for k, v in row.items()} for row in pq.read_table(folder).to_pylist()]


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
