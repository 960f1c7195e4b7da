"""The dataset card of a version: README.md with the funnel, the mix, histograms (PNG files
in `plots/`, drawn with matplotlib) and example pairs with their negatives.

It reads the version's own Parquet, so it shows what was written, not what was meant. It
reads it column by column and shard by shard (mix columns counted, scores as numeric arrays,
the few example rows alone), never every pair's texts: memory stays flat as versions grow
to millions of pairs (bench/card_memory.py measures it).
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dataset.hub import front_matter
from pipeline.dataset.mix import MIX_COLUMNS, MixCounts, mix_table

EXAMPLES = 5
SCORE_PLOTS = {
    "score_consistency": "cosine(query, positive)",
    "score_round_trip_rank": "rank of the positive in the corpus",
    "score_ngram_overlap": "share of query n-grams copied from the passage",
    "score_llm_judge": "the LLM judge's P(yes)",
    "negative_scores": "cosine(query, hard negative)",
}
EXAMPLE_COLUMNS = ["query", "positive", "negatives", "negative_scores", "language",
                   "question_type"]  # fmt: skip
BATCH_ROWS = 65_536  # rows per read batch inside a shard, so a huge shard stays bounded
# A thresholded score: the check whose rejects carry it, and its threshold's config key.
THRESHOLDS = {
    "score_consistency": ("consistency", "low_consistency", "min_cosine"),
    "score_round_trip_rank": ("round_trip", "round_trip_miss", "top_k"),
    "score_ngram_overlap": ("heuristics", "ngram_overlap", "max_ngram_overlap"),
    "score_llm_judge": ("llm_judge", "judge_says_no", "min_score"),
}


def _plot(
    values: list[float] | np.ndarray,
    title: str,
    xlabel: str,
    path: Path,
    rejected: list[float] | np.ndarray | None = None,
    threshold: float | None = None,
) -> None:
    """A histogram of the kept pairs' scores; with `rejected`, the rejected pairs' beside
    them on the same bins, and the threshold drawn (for tuning it)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
    if rejected is not None and len(rejected):
        axis.hist([values, rejected], bins=30, color=["#3b6ea5", "#d0763c"],
                  label=[f"kept ({len(values)})", f"rejected ({len(rejected)})"])  # fmt: skip
    else:
        axis.hist(values, bins=30, color="#3b6ea5")
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    if (rejected is not None and len(rejected)) or threshold is not None:
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


def shards(folder: Path) -> list[Path]:
    """A folder's Parquet shards in the order `pq.read_table(folder)` reads them."""
    return sorted(folder.glob("*.parquet"))


def _batches(folder: Path, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The folder's rows, `columns` only, `rows` at a time, in order."""
    for path in shards(folder):
        yield from pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns)


def _numbers(column: pa.Array) -> np.ndarray:
    """A column's non-null values, in their stored width (float32 scores stay 4 bytes a
    value until drawn; see `_wide`). A copy: a view would pin the Arrow buffers of every
    batch read, and the memory pool with them (+60 MiB at a million pairs)."""
    return np.array(column.drop_null().to_numpy(zero_copy_only=False), copy=True)


def _wide(values: np.ndarray) -> np.ndarray:
    """The values as the numbers `to_pylist` gave (int64 or float64), so a histogram's bins
    come out exactly as they did from Python lists (float32 bins differ)."""
    return values.astype(np.int64 if values.dtype.kind in "iu" else np.float64)


def rejected_scores(version: Path) -> dict[tuple[str, str], np.ndarray]:
    """The scores of the version's rejects, by (stage, reason), in row order."""
    parts: dict[tuple[str, str], list[np.ndarray]] = {}
    for batch in _batches(version / "rejects", ["stage", "reason", "score"]):
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.is_valid(table["score"]))
        if not table.num_rows:
            continue
        grouped = table.group_by(["stage", "reason"], use_threads=False).aggregate(
            [("score", "list")]
        )
        columns = (grouped["stage"], grouped["reason"], grouped["score_list"])
        for stage, reason, scores in zip(*columns, strict=True):
            key = (stage.as_py(), reason.as_py())
            parts.setdefault(key, []).append(_numbers(scores.values))
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


@dataclass
class CardRows:
    """What the card shows of the kept pairs, without holding the pairs: the mix columns
    counted, each score column as one numeric array in its stored width (nulls dropped),
    every query's word count, and the first EXAMPLES rows whole."""

    mix: MixCounts = field(default_factory=MixCounts)
    query_words: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


def card_rows(version: Path) -> CardRows:
    """Read what the card and the mix report need of `version/data`, shard by shard."""
    folder = version / "data"
    card = CardRows()
    words: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {column: [] for column in SCORE_PLOTS}
    for batch in _batches(folder, ["query", *MIX_COLUMNS, *SCORE_PLOTS]):
        card.mix.add(batch)
        queries = batch.column("query").to_pylist()  # Python's split(), as the card counts
        words.append(np.fromiter((len(q.split()) for q in queries), np.int32, len(queries)))
        for column in SCORE_PLOTS:
            values = batch.column(column)
            if column == "negative_scores":
                values = pc.list_flatten(values)
            scores[column].append(_numbers(values))
    card.query_words = np.concatenate(words) if words else card.query_words
    card.scores = {
        column: np.concatenate(parts) if parts else np.zeros(0) for column, parts in scores.items()
    }
    for batch in _batches(folder, EXAMPLE_COLUMNS, EXAMPLES):  # decodes no more texts
        card.examples += batch.slice(0, EXAMPLES - len(card.examples)).to_pylist()
        if len(card.examples) >= EXAMPLES:
            break
    return card


def _plots(
    card: CardRows, folder: Path, rejects: dict[tuple[str, str], np.ndarray],
    filters: dict[str, Any],
) -> list[str]:  # fmt: skip
    folder.mkdir(exist_ok=True)
    lines = []
    if len(card.query_words):
        _plot(_wide(card.query_words), "query length", "words", folder / "query_words.png")
        lines.append("![query length](plots/query_words.png)")
    for column, label in SCORE_PLOTS.items():
        values = card.scores.get(column, np.zeros(0))
        rejected, threshold = np.zeros(0), None
        if column in THRESHOLDS:
            stage, reason, key = THRESHOLDS[column]
            rejected = rejects.get((stage, reason), rejected)
            if len(values) or len(rejected):
                threshold = (filters.get(stage) or {}).get(key)
        if len(values) or len(rejected):
            path = folder / f"{column}.png"
            _plot(_wide(values), column.removeprefix("score_"), label, path, rejected, threshold)
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


def card_text(manifest: dict[str, Any], card: CardRows, plots: list[str]) -> str:
    """The README.md of a version."""
    counts = manifest["counts"]
    languages = [str(v) for v in card.mix.values["language"] if v]
    lines = [
        front_matter(manifest, languages),
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
        counter = card.mix.values[column]
        top = counter.most_common(10)
        lines += [f"**{column}**" + (" (top 10)" if len(counter) > 10 else ""), ""]
        lines += [*_table((column, "pairs"), top), ""]
    if plots:
        lines += ["## Histograms", "", *plots, ""]
    lines += ["## Examples", ""]
    for row in card.examples:
        lines += _example(row)
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "# this folder's path (or its repository id once pushed)",
        f"pairs = load_dataset('{manifest['version']}', split='train')",
        f"rejects = load_dataset('{manifest['version']}', 'rejects', split='train')",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(version: Path, manifest: dict[str, Any], card: CardRows) -> None:
    """Write README.md and plots/*.png into the (staging) version folder."""
    filters = (manifest.get("config") or {}).get("filters") or {}
    plots = _plots(card, version / "plots", rejected_scores(version), filters)
    (version / "README.md").write_text(card_text(manifest, card, plots), encoding="utf-8")


def manifest_of(version: Path) -> dict[str, Any]:
    """A complete version's manifest (the marker of completeness)."""
    return json.loads((version / "manifest.json").read_text(encoding="utf-8"))
