"""The adapter stage: the fit learns a ranking a linear map can express and stays at the
identity when held there; the encoder fit learns a ranking by the queries' words; corpus
crops; query logs; `embsynth train` with an adapter writes a final model whose Dense layer
(or refitted encoder) sentence-transformers and our Embedder both apply; bad input."""

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from sentence_transformers import SentenceTransformer

from pipeline.adapt.crops import crops
from pipeline.adapt.encoder import fit_encoder
from pipeline.adapt.lesson import Lesson, every_row
from pipeline.adapt.linear import fit_linear, held_out_kl, listwise_kl
from pipeline.adapt.stage import REPORT, logged_queries
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Document
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import AdapterConfig, EncoderFit
from tests.conftest import cli, train_tiny

TEXTS = ["how do wings make lift", "Lift comes from the pressure difference across a wing."]


def fit(queries: np.ndarray, docs: np.ndarray, targets: np.ndarray, reg: float) -> object:
    settings = {"steps": 150, "learning_rate": 1e-2, "temperature": 0.05, "batch_size": 64}
    rows = every_row(len(queries), len(docs))
    return fit_linear(queries, docs, rows, targets, reg=reg, seed=0, device=torch.device("cpu"),
                      **settings)  # fmt: skip


def test_the_fit_learns_a_linear_teachers_ranking_and_the_penalty_holds_it_at_identity() -> None:
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(300, 8)).astype(np.float32)
    docs = rng.normal(size=(200, 8)).astype(np.float32)
    # A teacher whose ranking a map can express: cosines after a fixed W*.
    star = torch.eye(8) + 0.8 * torch.from_numpy(rng.normal(size=(8, 8)).astype(np.float32))
    q, d = (F.normalize(torch.from_numpy(x) @ star.T, dim=-1) for x in (queries, docs))
    targets = (q @ d.T).numpy()
    learned = fit(queries, docs, targets, reg=1e-4)
    assert learned.held_out_after < 0.5 * learned.held_out_before  # on queries it never saw
    held = fit(queries, docs, targets, reg=1e3)
    torch.testing.assert_close(held.weight, torch.eye(8), atol=2e-3, rtol=0)


def test_the_encoder_fit_learns_a_ranking_by_the_queries_words(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    # Four documents; each query names its topic's words among filler, and the teacher puts
    # the topic's document first. A random encoder cannot rank them; the fitted one learns
    # which words point where, on held-out queries too.
    topics = ["wing lift pressure", "printing press ink", "spruce bark beetle", "tax law court"]
    filler = ["about", "notes on", "what is", "history of", "the", "facts"]
    texts = [f"{filler[i % 6]} {topics[i % 4]} {filler[(i // 4) % 6]}" for i in range(60)]
    embedder = Embedder(tiny_encoder)
    documents = [Document(str(n), f"{t} " * 5) for n, t in enumerate(topics)]
    index = CorpusIndex.build(documents, embedder)
    targets = np.full((len(texts), 4), 0.1, dtype=np.float32)
    targets[np.arange(len(texts)), np.arange(len(texts)) % 4] = 0.9
    rows = every_row(len(texts), 4)
    taught = Lesson(index, texts, embedder.encode_queries(texts), rows, targets, logged=0)
    encoder = EncoderFit(learning_rate=2e-3, epochs=4, batch_size=8)
    settings = AdapterConfig(job=tmp_path / "job.yaml", fit="encoder", encoder=encoder)
    out = tmp_path / "fitted"
    before, after = fit_encoder(
        tiny_encoder, taught, settings, instruction=None, seed=0, device=torch.device("cpu"),
        out=out,
    )  # fmt: skip
    assert after < 0.5 * before  # on the held-out fifth
    modules = json.loads((out / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]  # no Dense layer
    ours = Embedder(out).encode_queries(texts)
    st = SentenceTransformer(str(out), device="cpu").encode(texts)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    assert (np.argmax(ours @ index.vectors.T, axis=1) == np.arange(len(texts)) % 4).mean() > 0.9


def test_crops_take_sentences_after_the_first_or_a_window() -> None:
    text = (
        "Wings and lift. Lift comes from the pressure difference. Too short. "
        "The air above the wing moves faster than below. A fourth sentence is not taken here."
    )
    assert crops([text], 2, seed=0) == ["Lift comes from the pressure difference"]
    words = " ".join(f"w{i}" for i in range(40))  # no sentence breaks
    (window,) = crops([words], 2, seed=0)
    assert 6 <= len(window.split()) <= 14 and window in words
    assert crops([text, words], 0, seed=0) == []


def test_logged_queries_are_read_once_each_without_blanks_or_generated_ones(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log.jsonl"
    rows = [{"query": "wing flutter onset"}, {"query": "Wing flutter onset?"}, {"text": "  "},
            {"query": "how do wings make lift"}, {"query": "shock stall"}]  # fmt: skip
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "queries.jsonl").write_text('{"_id": "1", "text": "boundary layer heat"}\n')
    settings = AdapterConfig(job=tmp_path / "job.yaml", queries=[log, beir])
    assert logged_queries(settings, [TEXTS[0]]) == [
        "wing flutter onset",
        "shock stall",
        "boundary layer heat",
    ]


@pytest.fixture
def adapter_run(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path, job_file: Callable[..., Path]
) -> Callable[..., tuple[Path, object]]:
    """Write a training YAML with an adapter whose job has the given teacher; run it."""

    def run(
        teacher: dict[str, object], queries: tuple[Path, ...] = (), **adapter: object
    ) -> tuple[Path, object]:
        job = job_file(teacher=teacher)
        settings = {"job": str(job), "steps": 30, "crops": 1, "learning_rate": 1e-2,
                    "queries": [str(path) for path in queries], **adapter}  # fmt: skip
        return train_tiny(tiny_encoder, title_pairs, tmp_path, max_steps=2,
                          merge_with_base=0.5, adapter=settings)  # fmt: skip

    return run


def test_train_with_an_adapter_writes_a_dense_layer_that_every_loader_applies(
    adapter_run: Callable[..., tuple[Path, object]], title_pairs: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"query": "pressure above a wing"}\n{"query": "history of printing"}\n')
    out, done = adapter_run({"kind": "fused"}, (log,))
    assert done.exit_code == 0, done.output
    final, before = out / "final", out / "unadapted"
    assert (out / "unmerged").is_dir() and before.is_dir()
    modules = json.loads((final / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "2_Normalize"]
    report = json.loads((out / REPORT).read_text())
    assert report["generated"] == 48 and report["logged"] == 2
    assert report["fit"] == "linear" and report["steps"] == 30 and "encoder" not in report
    assert report["queries"] > 50 and report["query_files"] == [str(log)]  # and crops
    assert report["held_out_kl_after"] < report["held_out_kl_before"]
    assert "held-out KL" in done.stdout
    # The map is the saved weight: the final vectors are the unadapted ones through it.
    weight = SentenceTransformer(str(final), device="cpu")[2].linear.weight.detach()
    assert not torch.allclose(weight, torch.eye(weight.shape[0]))
    ours = Embedder(final).encode_documents(TEXTS)
    by_hand = F.normalize(torch.from_numpy(Embedder(before).encode_documents(TEXTS)) @ weight.T)
    np.testing.assert_allclose(ours, by_hand.numpy(), atol=1e-5)
    st = SentenceTransformer(str(final), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    # Training on from the adapted model would drop its Dense layer: refused.
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump({"model": str(final), "data": [str(title_pairs)],
                                     "output_dir": str(tmp_path / "again")}))  # fmt: skip
    refused = cli("train", again)
    assert refused.exit_code == 2 and "Dense layers" in refused.stderr


def test_train_with_an_encoder_adapter_refits_the_encoder_and_writes_no_dense_layer(
    adapter_run: Callable[..., tuple[Path, object]],
) -> None:
    encoder = {"learning_rate": 1e-3, "epochs": 2, "batch_size": 8}
    out, done = adapter_run({"kind": "fused"}, fit="encoder", encoder=encoder)
    assert done.exit_code == 0, done.output
    final, before = out / "final", out / "unadapted"
    modules = json.loads((final / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Normalize"]
    report = json.loads((out / REPORT).read_text())
    assert report["fit"] == "encoder" and report["encoder"] == encoder
    assert "reg" not in report and "steps" not in report  # the linear fit's settings
    # The tiny random model's teacher is near uniform (KL ~1e-3): learning is shown above.
    assert 0 <= report["held_out_kl_after"] < 1 and 0 <= report["held_out_kl_before"] < 1
    ours = Embedder(final).encode_documents(TEXTS)
    assert not np.allclose(ours, Embedder(before).encode_documents(TEXTS), atol=1e-3)
    st = SentenceTransformer(str(final), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(st, ours, atol=1e-5)


@pytest.mark.parametrize(
    ("setting", "named"),
    [({"fit": "map"}, "adapter.fit"), ({"encoder": {"epochs": 0}}, "adapter.encoder.epochs")],
    ids=["unknown-fit", "no-epochs"],
)
def test_bad_adapter_fit_settings_are_one_line_errors_before_training(
    adapter_run: Callable[..., tuple[Path, object]], setting: dict[str, object], named: str
) -> None:
    out, done = adapter_run({"kind": "fused"}, **setting)
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0 and named in done.stderr
    assert not out.exists()


def test_an_adapter_without_a_fused_teacher_is_refused_before_training(
    adapter_run: Callable[..., tuple[Path, object]],
) -> None:
    out, done = adapter_run({"kind": "none"})
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0 and "teacher.kind is none" in done.stderr
    assert not out.exists()  # refused before anything was written


def test_a_missing_query_log_is_refused_before_training(
    adapter_run: Callable[..., tuple[Path, object]], tmp_path: Path
) -> None:
    out, done = adapter_run({"kind": "fused"}, (tmp_path / "no-log.jsonl",))
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0
    assert "adapter.queries: no such query file" in done.stderr
    assert not out.exists()


def test_the_held_out_kl_in_batches_is_the_kl_of_one_table() -> None:
    """The held-out KL is taken a batch of queries at a time (a table of every held-out
    query x the taught documents grows with the corpus squared): the same mean."""
    rng = np.random.default_rng(0)
    student = torch.from_numpy(rng.normal(size=(103, 40)).astype(np.float32))
    teacher = torch.from_numpy(rng.normal(size=(103, 40)).astype(np.float32))
    held = np.arange(3, 103, 2)

    def kl(rows: np.ndarray) -> torch.Tensor:
        return listwise_kl(student[rows], teacher[rows], 0.05)

    whole = float(kl(held))
    assert held_out_kl(held, 7, kl) == pytest.approx(whole, rel=1e-6)
    assert held_out_kl(held, len(held), kl) == pytest.approx(whole, rel=1e-7)
    assert math.isnan(held_out_kl(held[:0], 7, kl))
