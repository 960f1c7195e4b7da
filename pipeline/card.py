"""The dataset card of a version: README.md with the funnel, the mix, histograms (PNG files
in `plots/`, drawn with matplotlib) and example pairs with their negatives.

It reads the version's own Parquet, so it shows what was written, not what was meant.
"""

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.mix.report import mix_table

MIX_COLUMNS = ("task", "language", "question_type", "difficulty", "persona")
EXAMPLES = 5
SCORE_PLOTS = {
    "score_consistency": "cosine(query, positive)",
    "score_round_trip_rank": "rank of the positive in the corpus",
    "score_ngram_overlap": "share of query n-grams copied from the passage",
    "score_llm_judge": "the LLM judge's P(yes)",
    "negative_scores": "cosine(query, hard negative)",
}
# A thresholded score: the check whose rejects carry it, and its threshold's config key.
THRESHOLDS = {
    "score_consistency": ("consistency", "low_consistency", "min_cosine"),
    "score_round_trip_rank": ("round_trip", "round_trip_miss", "top_k"),
    "score_ngram_overlap": ("heuristics", "ngram_overlap", "max_ngram_overlap"),
    "score_llm_judge": ("llm_judge", "judge_says_no", "min_score"),
}


def _plot(
    values: list[float],
    title: str,
    xlabel: str,
    path: Path,
    rejected: list[float] | None = None,
    threshold: float | None = None,
) -> None:
    """A histogram of the kept pairs' scores; with `rejected`, the rejected pairs' beside
    them on the same bins, and the threshold drawn (for tuning it)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
    if rejected:
        axis.hist([values, rejected], bins=30, color=["#3b6ea5", "#d0763c"],
                  label=[f"kept ({len(values)})", f"rejected ({len(rejected)})"])  # fmt: skip
    else:
        axis.hist(values, bins=30, color="#3b6ea5")
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    if rejected or threshold is not None:
        axis.legend(fontsize="small")
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("pairs")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]


def rejected_scores(version: Path) -> dict[tuple[str, str], list[float]]:
    """The scores of the version's rejects, by (stage, reason)."""
    folder = version / "rejects"
    found: dict[tuple[str, str], list[float]] = {}
    if not any(folder.glob("*.parquet")):
        return found
    for row in pq.read_table(folder, columns=["stage", "reason", "score"]).to_pylist():
        if row["score"] is not None:
            found.setdefault((row["stage"], row["reason"]), []).append(row["score"])
    return found


def _plots(
    rows: list[dict[str, Any]], folder: Path, rejects: dict[tuple[str, str], list[float]],
    filters: dict[str, Any],
) -> list[str]:  # fmt: skip
    folder.mkdir(exist_ok=True)
    lines = []
    query_words = [len(r["query"].split()) for r in rows]
    if query_words:
        _plot(query_words, "query length", "words", folder / "query_words.png")
        lines.append("![query length](plots/query_words.png)")
    for column, label in SCORE_PLOTS.items():
        values = [
            v for r in rows for v in (r[column] if column == "negative_scores" else [r[column]])
        ]
        values = [v for v in values if v is not None]
        rejected, threshold = [], None
        if column in THRESHOLDS:
            stage, reason, key = THRESHOLDS[column]
            rejected = rejects.get((stage, reason), [])
            threshold = (filters.get(stage) or {}).get(key) if (values or rejected) else None
        if values or rejected:
            path = folder / f"{column}.png"
            _plot(values, column.removeprefix("score_"), label, path, rejected, threshold)
            lines.append(f"![{column}](plots/{column}.png)")
    return lines


def _example(row: dict[str, Any]) -> list[str]:
    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= 160 else text[:157] + "..."

    lines = [f"- **query** ({row['language']}, {row['question_type']}): {row['query']}",
             f"  - positive: {short(row['positive'])}"]  # fmt: skip
    for negative, score in zip(row["negatives"], row["negative_scores"] or [], strict=False):
        source = "written" if score is None else f"{score:.2f}"
        lines.append(f"  - negative ({source}): {short(negative)}")
    return lines


def card_text(manifest: dict[str, Any], rows: list[dict[str, Any]], plots: list[str]) -> str:
    """The README.md of a version."""
    counts = manifest["counts"]
    lines = [
        f"# {manifest['name']} {manifest['version']}",
        "",
        "Synthetic query-passage pairs for training text-embedding models, generated by",
        f"embsynth with `{manifest['model']}` (Qwen3-Embedding two-stage recipe).",
        "",
        f"- pairs kept: {counts['kept']}",
        f"- documents read: {counts['read']['documents']}",
        f"- created: {manifest['finished_at']}",
        f"- config hash: {manifest['config_hash']}",
        "",
        "## Funnel",
        "",
    ]
    funnel = [
        (step["step"], step["in"], step["out"],
         ", ".join(f"{k} {v}" for k, v in sorted(step["rejected"].items())) or "-")
        for step in manifest.get("funnel", [])
    ]  # fmt: skip
    lines += _table(("step", "in", "out", "rejected"), funnel)
    lines += ["", "## Mix", ""]
    if "mix" in manifest:
        lines += ["Target (config weights) vs achieved (kept pairs):", ""]
        lines += [
            *_table(("dimension", "value", "target", "achieved"), mix_table(manifest["mix"])),
            "",
        ]
    for column in MIX_COLUMNS:
        counter = Counter(r[column] for r in rows)
        top = counter.most_common(10)
        lines += [f"**{column}**" + (" (top 10)" if len(counter) > 10 else ""), ""]
        lines += [*_table((column, "pairs"), top), ""]
    if plots:
        lines += ["## Histograms", "", *plots, ""]
    lines += ["## Examples", ""]
    for row in rows[:EXAMPLES]:
        lines += _example(row)
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "# run from this folder; pass the full path to data/*.parquet from elsewhere",
        "ds = load_dataset('parquet', data_files='data/*.parquet', split='train')",
        "```",
        "",
    ]
    return "\n".join(lines)


def card_rows(version: Path) -> list[dict[str, Any]]:
    """The kept pairs' columns the card and the mix report use."""
    columns = ["query", "positive", "negatives", "negative_scores", *MIX_COLUMNS, *SCORE_PLOTS]
    return pq.read_table(version / "data", columns=list(dict.fromkeys(columns))).to_pylist()


def write_card(version: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write README.md and plots/*.png into the (staging) version folder."""
    filters = (manifest.get("config") or {}).get("filters") or {}
    plots = _plots(rows, version / "plots", rejected_scores(version), filters)
    (version / "README.md").write_text(card_text(manifest, rows, plots), encoding="utf-8")


def manifest_of(version: Path) -> dict[str, Any]:
    """A complete version's manifest (the marker of completeness)."""
    return json.loads((version / "manifest.json").read_text(encoding="utf-8"))
