"""The quality steps inside a real job (tiny Qwen3 on vLLM): the funnel adds up, the card's
plots are real PNGs, a later version drops queries of an earlier one, and bad settings are
one-line errors that write nothing."""

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from matplotlib.image import imread

from pipeline.config.job import DedupConfig, load_config
from pipeline.dataset.card import _plot, rejected_scores
from pipeline.dedup.queries import QueryDedup
from pipeline.run.job import run_job
from tests.conftest import SAMPLE_CORPUS, cli, write_jsonl
from tests.test_cli import assert_user_error

PNG = b"\x89PNG\r\n\x1a\n"


def test_funnel_adds_up_and_the_card_has_plots(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    # Every check on; the tiny model's gibberish makes most of them reject something.
    filters = {"length": {"tolerance": 1.0}, "consistency": {"min_cosine": 0.05}}
    docs = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()[:23]]
    twin = {**docs[0], "id": "twin-of-first"}  # a repeated document: dropped at doc_dedup
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [*docs, twin])
    config = load_config(job_file(filters=filters, input={"path": str(corpus)}))
    summary = run_job(config, generator=generator, limit=24, progress=False)
    version = summary.version_dir
    manifest = json.loads((version / "manifest.json").read_text())
    funnel = manifest["funnel"]
    steps = [step["step"] for step in funnel]
    assert steps == ["read", "doc_dedup", "config", "query", "filter", "length", "language",
                     "heuristics", "consistency", "round_trip", "negatives", "dedup"]  # fmt: skip
    assert funnel[0]["in"] == 24
    assert funnel[1]["rejected"] == {"duplicate_document": 1}
    for step, after in itertools.pairwise(funnel):
        assert step["out"] == after["in"], (step, after)
    rejects = pq.read_table(version / "rejects").to_pylist()
    for step in funnel:
        rejected = sum(step["rejected"].values())
        assert step["in"] == step["out"] + rejected, step
        assert rejected == sum(r["stage"] == step["step"] for r in rejects)
    assert funnel[-1]["out"] == summary.kept == pq.read_table(version / "data").num_rows
    assert summary.kept > 0 and sum(s["in"] - s["out"] for s in funnel) > 0
    for reject in rejects:
        if reject["reason"] in ("low_consistency", "round_trip_miss"):
            assert reject["score"] is not None

    card = (version / "README.md").read_text()
    assert "## Funnel" in card and "| consistency |" in card and "## Mix" in card
    plots = sorted((version / "plots").glob("*.png"))
    assert plots and {p.name for p in plots} >= {"query_words.png"}
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG and imread(plot).shape[0] > 100
        assert f"plots/{plot.name}" in card
    low = sorted(r["score"] for r in rejects if r["reason"] == "low_consistency")
    assert sorted(rejected_scores(version).get(("consistency", "low_consistency"), [])) == low
    if low:  # the consistency plot then shows them beside the kept pairs
        assert "plots/score_consistency.png" in card
    if summary.kept:
        rows = pq.read_table(version / "data").to_pylist()
        assert all(len(r["negatives"]) == len(r["negative_scores"]) for r in rows)
        assert all(r["score_round_trip_rank"] <= 20 for r in rows)

    report = cli("inspect", str(version))
    assert report.exit_code == 0 and "consistency" in report.output and "kept (" in report.output


def has_colour(image: Any, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.02).any())


def test_a_score_plot_shows_kept_and_rejected_with_the_threshold(tmp_path: Path) -> None:
    kept, rejected = [0.4, 0.5, 0.6, 0.7], [0.05, 0.1, 0.2]
    _plot(kept, "consistency", "cosine", tmp_path / "both.png", rejected, 0.3)
    _plot(kept, "consistency", "cosine", tmp_path / "kept.png")
    both, alone = imread(tmp_path / "both.png"), imread(tmp_path / "kept.png")
    assert has_colour(both, "#3b6ea5") and has_colour(both, "#d0763c")  # kept and rejected
    assert has_colour(alone, "#3b6ea5") and not has_colour(alone, "#d0763c")
    # The threshold line: a black vertical run inside the axes, absent from the kept-only plot.
    black = (both[..., :3].max(axis=-1) < 0.05).sum(axis=0)
    black_alone = (alone[..., :3].max(axis=-1) < 0.05).sum(axis=0)
    assert (black - black_alone).max() > 40


def test_a_second_version_drops_duplicates_of_the_first(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    # Each request is seeded from its content, so the same documents give the same queries
    # again: every kept query of v0001 comes back in v0002.
    config = load_config(job_file())
    first = run_job(config, generator=generator, limit=8, progress=False)
    assert first.kept > 0 and (first.version_dir / "state" / "queries.parquet").is_file()
    config.output.shard_size = 5  # another job (the same one again would be a no-op)
    second = run_job(config, generator=generator, limit=8, progress=False)
    assert second.version_dir.name == "v0002" and second.kept == 0
    assert sum(second.rejected["dedup"].values()) == first.kept
    details = pq.read_table(second.version_dir / "rejects").to_pylist()
    assert all("v0001:" in r["detail"] for r in details if r["stage"] == "dedup")


def test_unknown_embedder_and_out_of_range_thresholds(
    tmp_path: Path, job_file: Callable[..., Path]
) -> None:
    result = cli("run", str(job_file(embedder={"model": str(tmp_path / "no-embedder")})))
    assert_user_error(result, "embedder not found")
    assert not (tmp_path / "out").exists()
    cases = {
        "filters.consistency.min_cosine": {"filters": {"consistency": {"min_cosine": 2}}},
        "dedup.near.threshold": {"dedup": {"near": {"threshold": 1.5}}},
        "negatives": {"negatives": {"rank_start": 10, "rank_end": 5}},
    }
    for key, override in cases.items():
        assert_user_error(cli("run", str(job_file(**override))), key)
    assert not (tmp_path / "out").exists()


def test_dedup_state_from_another_embedder_is_refused(
    tmp_path: Path, job_file: Callable[..., Path], tiny_encoder: Path
) -> None:
    earlier = tmp_path / "out" / "t" / "v0001"
    QueryDedup(DedupConfig(), "all-MiniLM-L6-v2", 384).save(earlier)  # semantic state
    job = job_file(embedder={"model": str(tiny_encoder)})
    assert_user_error(cli("run", str(job)), "dedup state was made with embedder")
    assert sorted(p.name for p in (tmp_path / "out" / "t").iterdir()) == ["v0001"]
