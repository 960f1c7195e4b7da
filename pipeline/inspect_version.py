"""`embsynth inspect VERSION_DIR`: the funnel, then samples of kept pairs and of rejects per
reason, so a user can see what each filter removed before trusting its threshold."""

import random
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.card import manifest_of
from pipeline.errors import UserError


def _short(text: str | None, width: int = 110) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def inspect_version(version: Path, samples: int = 3, seed: int = 0) -> str:
    """The report as text."""
    if not (version / "manifest.json").is_file():
        raise UserError(f"{version}: not a complete dataset version (no manifest.json)")
    manifest = manifest_of(version)
    rng = random.Random(seed)
    lines = [
        f"{manifest['name']} {manifest['version']}: {manifest['counts']['kept']} pairs kept",
        "",
    ]
    lines.append(f"{'step':<12} {'in':>7} {'out':>7}  rejected")
    for step in manifest.get("funnel", []):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(step["rejected"].items())) or "-"
        lines.append(f"{step['step']:<12} {step['in']:>7} {step['out']:>7}  {reasons}")
    kept = pq.read_table(version / "data", columns=["query", "positive", "negatives"]).to_pylist()
    lines += ["", f"kept ({min(samples, len(kept))} of {len(kept)}):"]
    for row in rng.sample(kept, min(samples, len(kept))):
        lines.append(f"  query:    {_short(row['query'])}")
        lines.append(f"  positive: {_short(row['positive'])}")
        for negative in row["negatives"][:1]:
            lines.append(f"  negative: {_short(negative)}")
        lines.append("")
    by_reason: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in pq.read_table(version / "rejects").to_pylist():
        by_reason[(row["stage"], row["reason"])].append(row)
    for (stage, reason), rows in sorted(by_reason.items()):
        lines.append(f"rejected at {stage}: {reason} ({len(rows)}):")
        for row in rng.sample(rows, min(samples, len(rows))):
            score = "" if row.get("score") is None else f" [score {row['score']:.3g}]"
            lines.append(
                f"  {_short(row['raw']) or row['doc_id']}{score}  ({_short(row['detail'], 80)})"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
