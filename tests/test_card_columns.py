"""The dataset card and `embsynth inspect` read a version column by column: the card's
tables, plots and examples are still exactly what the version's rows say (checked here
against counts made from the rows themselves), and neither holds every pair's texts."""

import json
import random
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import pipeline.dataset.card as card_module
from pipeline.config.job import JobConfig
from pipeline.dataset.card import EXAMPLES, MIX_COLUMNS, card_rows, write_card
from pipeline.dataset.inspect import inspect_version
from pipeline.dataset.mix import mix_report
from pipeline.dataset.records import PAIR_SCHEMA, REJECT_SCHEMA
from pipeline.dataset.writer import ShardWriter
from pipeline.personas.library import load_personas
from pipeline.prompts.library import PromptLibrary

PERSONAS = [f"persona {i}" for i in range(13)]  # more than the card's top 10


def pair(i: int, rng: random.Random, text_chars: int = 60) -> dict[str, Any]:
    """A kept pair with every PAIR_SCHEMA column; mix values and scores vary (nulls, empty
    difficulties, ties among the counts), texts are `text_chars` long."""
    row: dict[str, Any] = dict.fromkeys(PAIR_SCHEMA.names)
    negatives = rng.randint(0, 3)
    row |= {
        "pair_id": f"p{i}",
        "query": f"query {i} " + "word " * rng.randint(0, 9) + ("\t tail" if i % 5 else ""),
        "positive": f"positive {i} " + "x" * text_chars,
        "negatives": [f"negative {i}.{n} " + "y" * text_chars for n in range(negatives)],
        "instruction": "Given a query, retrieve passages",
        "task": rng.choice(["retrieval", "sts", "bitext"]),
        "language": rng.choice(["en", "de", "fr", "es"]),
        "question_type": rng.choice(["what", "how", None]),
        "difficulty": rng.choice(["phd", "university", "", None]),
        "persona": rng.choice([*PERSONAS, None]),
        "doc_id": f"d{i}",
        "model": "m",
        "template_hash": "h",
        "sampling": "{}",
        "seed": 0,
        "score_consistency": rng.choice([None, rng.random()]),
        "score_round_trip_rank": rng.choice([None, rng.randint(1, 20)]),
        "score_ngram_overlap": rng.random(),
        "score_llm_judge": None,  # no judge: no plot
        "negative_scores": [rng.choice([None, rng.random()]) for _ in range(negatives)],
        "teacher_scores": [],
    }
    return row


def reject(i: int, rng: random.Random, text_chars: int = 60) -> dict[str, Any]:
    stage, reason = rng.choice(
        [("consistency", "low_consistency"), ("round_trip", "round_trip_miss"),
         ("filter", "query_too_short"), ("heuristics", "ngram_overlap")]
    )  # fmt: skip
    score = None if reason == "query_too_short" else rng.random()
    raw = f"raw {i} " + "z" * text_chars
    return {"doc_id": f"r{i}", "task": "retrieval", "stage": stage, "reason": reason,
            "detail": f"detail {i}", "raw": raw, "score": score}  # fmt: skip


def write_version(
    folder: Path, pairs: int, rejects: int, shard_size: int, text_chars: int = 60
) -> Path:
    """A finished version folder: pair and reject shards and a manifest."""
    rng = random.Random(0)
    kept = ShardWriter(folder / "data", PAIR_SCHEMA, shard_size)
    for i in range(pairs):
        kept.add([pair(i, rng, text_chars)])
    kept.close()
    dropped = ShardWriter(folder / "rejects", REJECT_SCHEMA, shard_size)
    for i in range(rejects):
        dropped.add([reject(i, rng, text_chars)])
    dropped.close()
    manifest = {
        "name": "t", "version": folder.name, "model": "m", "finished_at": "now",
        "config_hash": "c", "counts": {"kept": pairs, "read": {"documents": pairs}},
        "funnel": [{"step": "read", "in": pairs, "out": pairs, "rejected": {}}],
        "config": {"filters": {"consistency": {"min_cosine": 0.3}, "round_trip": {"top_k": 5}}},
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def library() -> tuple[JobConfig, PromptLibrary]:
    config = JobConfig(name="t", input={"path": "corpus.jsonl"}, generator={"model": "m"})
    return config, PromptLibrary(config.prompts_dir, load_personas(config.personas))


def test_card_tables_examples_and_plots_are_the_rows(
    tmp_path: Path, library: tuple[JobConfig, PromptLibrary], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shards of 3 rows: the examples span two shards and first-seen order spans many.
    version = write_version(tmp_path / "v0001", pairs=60, rejects=30, shard_size=3)
    drawn: dict[str, tuple[list[Any], list[Any], Any]] = {}
    real_plot = card_module._plot

    def recording_plot(values: Any, title: str, xlabel: str, path: Path,
                       rejected: Any = None, threshold: Any = None) -> None:  # fmt: skip
        listed = list(rejected) if rejected is not None else []
        drawn[title] = (list(values), listed, threshold)
        real_plot(values, title, xlabel, path, rejected, threshold)

    monkeypatch.setattr(card_module, "_plot", recording_plot)
    manifest = json.loads((version / "manifest.json").read_text())
    card = card_rows(version)
    manifest["mix"] = mix_report(*library, card.mix)
    write_card(version, manifest, card)
    text = (version / "README.md").read_text()

    rows = pq.read_table(version / "data").to_pylist()
    rejects = pq.read_table(version / "rejects").to_pylist()
    for column in MIX_COLUMNS:  # tables: most common first, ties in first-seen order
        counter = Counter(r[column] for r in rows)
        title = f"**{column}**" + (" (top 10)" if len(counter) > 10 else "")
        table = [f"| {column} | pairs |", "|---|---|"]
        table += [f"| {value} | {n} |" for value, n in counter.most_common(10)]
        assert "\n".join([title, "", *table, ""]) in text, column
    assert len(Counter(r["persona"] for r in rows)) > 10  # the top-10 cut was exercised
    examples = [line for line in text.splitlines() if line.startswith("- **query**")]
    assert examples == [
        f"- **query** ({r['language']}, {r['question_type']}): {r['query']}"
        for r in rows[:EXAMPLES]
    ]
    assert text.count("  - negative (") == sum(len(r["negatives"]) for r in rows[:EXAMPLES])

    def scores(column: str) -> list[Any]:
        return [r[column] for r in rows if r[column] is not None]

    def rejected(reason: str) -> list[float]:
        return [r["score"] for r in rejects if r["reason"] == reason]

    assert drawn["query length"] == ([len(r["query"].split()) for r in rows], [], None)
    assert drawn["consistency"] == (scores("score_consistency"), rejected("low_consistency"), 0.3)
    assert drawn["round_trip_rank"] == (
        scores("score_round_trip_rank"),
        rejected("round_trip_miss"),
        5,
    )
    assert drawn["ngram_overlap"] == (scores("score_ngram_overlap"), rejected("ngram_overlap"),
                                      None)  # fmt: skip
    negatives = [s for r in rows for s in r["negative_scores"] if s is not None]
    assert drawn["negative_scores"] == (negatives, [], None)
    assert "llm_judge" not in drawn and "score_llm_judge" not in text
    assert set(drawn) == {"query length", "consistency", "round_trip_rank", "ngram_overlap",
                          "negative_scores"}  # fmt: skip

    achieved = manifest["mix"]["achieved"]
    for column in ("task", "language", "difficulty"):
        counts = Counter(r[column] or "none" for r in rows)
        shares = {k: round(v / len(rows), 4) for k, v in counts.items()}
        assert list(achieved[column].items()) == list(shares.items()), column
    cells = Counter((r["task"], r["language"], r["difficulty"] or "none") for r in rows)
    assert manifest["mix"]["cells"] == [
        {"task": t, "language": lang, "difficulty": d, "pairs": n}
        for (t, lang, d), n in sorted(cells.items())
    ]


def test_inspect_samples_the_same_rows_by_position(tmp_path: Path) -> None:
    version = write_version(tmp_path / "v0001", pairs=40, rejects=50, shard_size=7)
    report = inspect_version(version, samples=3, seed=5)

    rng = random.Random(5)  # what a sample of the loaded rows picks, row by row
    kept = pq.read_table(version / "data").to_pylist()
    expected = [f"  query:    {' '.join(r['query'].split())}" for r in rng.sample(kept, 3)]
    assert [line for line in report.splitlines() if line.startswith("  query:")] == expected
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in pq.read_table(version / "rejects").to_pylist():
        groups.setdefault((row["stage"], row["reason"]), []).append(row)
    blocks = report.split("rejected at ")[1:]
    assert len(blocks) == len(groups)
    for block, (key, rows) in zip(blocks, sorted(groups.items()), strict=True):
        assert block.startswith(f"{key[0]}: {key[1]} ({len(rows)}):")
        picked = [f"({r['detail']})" for r in rng.sample(rows, min(3, len(rows)))]
        assert [line.rsplit("  ", 1)[-1] for line in block.splitlines()[1:4]] == picked


@pytest.fixture
def big_texts(tmp_path: Path) -> Path:
    """240 pairs with a 25 KB positive and up to 3 negatives as long, and 240 rejects with a
    25 KB raw text: about 16 MB and 6 MB as Python strings if every row were loaded."""
    return write_version(tmp_path / "v0001", 240, 240, shard_size=60, text_chars=25_000)


def traced_peak(step: Callable[[], Any]) -> tuple[Any, int]:
    """What `step` returns and the peak of Python allocations while it ran."""
    tracemalloc.start()
    try:
        return step(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_card_does_not_hold_every_pairs_texts(big_texts: Path) -> None:
    card, peak = traced_peak(lambda: card_rows(big_texts))
    assert peak < 4_000_000, peak  # 5 examples (~0.5 MB) and the small columns
    assert len(card.examples) == EXAMPLES and card.mix.rows == 240


def test_inspect_does_not_hold_every_pairs_texts(big_texts: Path) -> None:
    report, peak = traced_peak(lambda: inspect_version(big_texts))
    assert peak < 4_000_000, peak  # 3 pairs and 3 rejects per reason
    assert "kept (3 of 240)" in report
