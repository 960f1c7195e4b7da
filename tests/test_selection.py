"""`embsynth train` with `select`: the validation split holds whole documents that no
training pair (nor an adapter crop) comes from; the saved model is the best candidate on
the split, never a worse one; when nothing beats the base model, `final/` is the base and
the report says so; bad settings are one-line errors before training."""

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.adapt.stage import lesson
from pipeline.config.job import TeacherConfig
from pipeline.corpus import nearest
from pipeline.dataset.records import Document
from pipeline.embedding.data import load_examples
from pipeline.embedding.inference import Embedder
from pipeline.embedding.split import document_key, split_pairs
from pipeline.embedding.train_config import AdapterConfig, TrainConfig
from pipeline.selection.choose import REPORT, ModelCandidate, choose
from pipeline.selection.validation import Split, Validator
from tests.conftest import SAMPLE_CORPUS, train_tiny

PROBES = ["how wings make lift", "printing press history", "a passage about rivers"]


@pytest.fixture
def train_run(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> Callable[..., tuple[Path, Any]]:
    """Write a training YAML with a `select` section (and the given settings); run it."""

    def run(select: dict[str, Any], **settings: Any) -> tuple[Path, Any]:
        settings = {"max_steps": 6, "learning_rate": 1e-3} | settings
        return train_tiny(tiny_encoder, title_pairs, tmp_path,
                          select={"held_out": 0.25, **select}, **settings)  # fmt: skip

    return run


def test_the_split_holds_whole_documents_by_a_seeded_key(tmp_path: Path) -> None:
    from pipeline.embedding.data import write_version

    # Two queries per document: a document's pairs are never on both sides.
    pairs = [{"query": f"q{n} {side}", "positive": f"document {n}", "doc_id": f"d{n}"}
             for n in range(60) for side in ("a", "b")]  # fmt: skip
    examples = load_examples([write_version(tmp_path / "v0001", pairs)], 0)
    train, held = split_pairs(examples, 0.25, seed=0)
    trained_docs = {document_key(e) for e in train}
    held_docs = {document_key(e) for e in held}
    assert not trained_docs & held_docs
    assert len(train) + len(held) == 120 and 5 <= len(held_docs) <= 25
    assert all(sum(document_key(e) == d for e in held) == 2 for d in held_docs)
    # A function of the key and seed alone: the data's order does not move a document.
    again = split_pairs(examples[::-1], 0.25, seed=0)[1]
    assert {document_key(e) for e in again} == held_docs
    assert {document_key(e) for e in split_pairs(examples, 0.25, seed=1)[1]} != held_docs


def test_no_training_pair_keeps_a_held_out_document_as_a_negative(tmp_path: Path) -> None:
    from pipeline.embedding.data import write_version

    # Each pair's negatives are the next two documents, with teacher scores per slot.
    pairs = [{"query": f"q{n}", "positive": f"document {n}", "doc_id": f"d{n}",
              "negatives": [f"document {(n + 1) % 40}", f"document {(n + 2) % 40}"],
              "teacher_scores": [1.0, 0.1 * ((n + 1) % 40), 0.1 * ((n + 2) % 40)]}
             for n in range(40)]  # fmt: skip
    examples = load_examples([write_version(tmp_path / "v0001", pairs)], 3)
    train, held = split_pairs(examples, 0.3, seed=0)
    unseen = {e.positive for e in held}
    assert any(text in unseen for e in examples for text in e.negatives)  # the case arises
    for example in train:
        assert not unseen & set(example.negatives)
        # The teacher's scores still follow the positive's, slot by slot.
        expected = [0.1 * int(text.split()[1]) for text in example.negatives]
        assert example.teacher_scores[0] == 1.0
        np.testing.assert_allclose(example.teacher_scores[1:], expected)


def test_a_select_config_survives_its_own_dump(tmp_path: Path) -> None:
    # A script that edits a dumped config (the closed loop) validates it again.
    raw = {"model": str(tmp_path), "data": [str(tmp_path)], "output_dir": str(tmp_path),
           "select": {}, "adapter": {"job": str(tmp_path / "job.yaml")}}  # fmt: skip
    config = TrainConfig.model_validate(raw)
    again = TrainConfig.model_validate(config.model_dump(mode="json"))
    assert again.select == config.select and again.adapter == config.adapter
    with pytest.raises(ValueError, match=r"not adapter\.fit"):
        TrainConfig.model_validate(raw | {"adapter": raw["adapter"] | {"fit": "linear"}})


def test_the_adapter_lesson_crops_no_held_out_document(
    tiny_encoder: Path, job_file: Callable[..., Path]
) -> None:
    settings = AdapterConfig(job=job_file(teacher={"kind": "fused"}), crops=2)
    whole = lesson(tiny_encoder, ["a query"], settings)
    ids = whole.index.doc_ids
    held = frozenset(ids[::3])
    kept = lesson(tiny_encoder, ["a query"], settings, index=whole.index, held_out=held)
    crops_of = {ids[i]: t for i, t in enumerate(whole.index.texts)}
    assert len(kept.texts) < len(whole.texts)
    for text in kept.texts[1:]:  # the generated query, then the crops
        assert not any(text in crops_of[doc] for doc in held)


def test_train_saves_the_best_candidate_on_the_split(
    train_run: Callable[..., tuple[Path, Any]], job_file: Callable[..., Path], tiny_encoder: Path
) -> None:
    job = job_file(teacher={"kind": "fused"})
    adapter = {"job": str(job), "steps": 30, "crops": 1, "learning_rate": 1e-2}
    select = {"merge_with_base": [0, 0.5], "fits": ["none", "linear"]}
    out, done = train_run(select, adapter=adapter)
    assert done.exit_code == 0, done.output
    report = json.loads((out / REPORT).read_text())
    names = [c["name"] for c in report["candidates"]]
    assert names == ["base", "trained", "trained+linear", "merge-0.5", "merge-0.5+linear"]
    split = report["split"]
    assert split["training_pairs"] + split["held_out_pairs"] == 48
    assert split["queries"] == split["held_out_pairs"] > 0 and split["corpus"] > 48
    figures = {c["name"]: c["ndcg@10"] for c in report["candidates"]}
    assert all(0 <= c["teacher@10"] <= 1 for c in report["candidates"])
    # Never a worse one: the chosen candidate is the best on the split, and beats the base.
    chosen = report["chosen"]
    assert figures[chosen] == max(figures.values()) and chosen != "base"
    assert figures[chosen] > figures["base"] and not report["kept_base"]
    assert report["why"] in done.stdout and f"chose {chosen}" in done.stdout
    # final/ is that candidate: the same vectors.
    chosen_model = Path(next(c["model"] for c in report["candidates"] if c["name"] == chosen))
    np.testing.assert_allclose(
        Embedder(out / "final").encode_queries(PROBES),
        Embedder(chosen_model).encode_queries(PROBES),
        atol=1e-6,
    )
    # The linear adapter's corpus vectors, taken through its map, are those of a new pass.
    linear = report["candidates"][2]
    assert linear["adapter"]["fit"] == "linear"
    documents = [Document(str(n), text) for n, text in enumerate(PROBES)]
    validator = Validator(Split(documents, PROBES, ["0", "1", "2"], None, "probes", 0))
    mapped = validator.through_head(validator.index(out / "candidates" / "trained"),
                                    Path(linear["model"]))  # fmt: skip
    fresh = validator.index(Path(linear["model"]))
    np.testing.assert_allclose(mapped.vectors, fresh.vectors, atol=1e-5)


def test_the_base_is_kept_when_no_candidate_beats_it(
    train_run: Callable[..., tuple[Path, Any]], tiny_encoder: Path
) -> None:
    # A learning rate that wrecks the encoder: the trained model ranks worse than the base.
    out, done = train_run({"merge_with_base": [0], "fits": ["none"]}, learning_rate=0.5)
    assert done.exit_code == 0, done.output
    report = json.loads((out / REPORT).read_text())
    base, trained = report["candidates"]
    assert trained["ndcg@10"] <= base["ndcg@10"]
    assert report["kept_base"] and report["chosen"] == "base"
    assert "kept the base model" in done.stdout and "final/ is the base model" in done.stdout
    files = sorted(p.relative_to(tiny_encoder) for p in tiny_encoder.rglob("*") if p.is_file())
    assert files and files == sorted(
        p.relative_to(out / "final") for p in (out / "final").rglob("*") if p.is_file()
    )
    for name in files:
        assert (out / "final" / name).read_bytes() == (tiny_encoder / name).read_bytes()


def test_choose_never_takes_a_worse_candidate_and_needs_more_than_min_gain() -> None:
    def made(name: str, score: float) -> ModelCandidate:
        return ModelCandidate(name, Path(name), {"ndcg@10": score})

    base = made("base", 0.50)
    worse, better, best, tied = (made("a", 0.40), made("b", 0.55), made("c", 0.60),
                                 made("d", 0.60))  # fmt: skip
    assert choose([base, worse, better, best, tied], "ndcg@10", 0.0)[0] is best
    assert choose([base, worse], "ndcg@10", 0.0)[0] is base
    assert choose([base, better], "ndcg@10", 0.1)[0] is base  # +0.05 is within min_gain
    kept, why = choose([base, made("e", 0.50)], "ndcg@10", 0.0)  # a tie does not beat it
    assert kept is base and why.startswith("kept the base model")


@pytest.mark.parametrize(
    ("select", "settings", "named"),
    [
        ({}, {"merge_with_base": 0.5}, "select.merge_with_base"),
        ({"fits": ["linear"]}, {}, "need an adapter section"),
        ({"held_out": 0.001, "fits": ["none"]}, {}, "the validation split holds no pair"),
        ({"metric": "recall"}, {}, "select.metric"),
    ],
    ids=["hand-merge", "fit-without-adapter", "empty-split", "unknown-metric"],
)
def test_bad_select_settings_are_one_line_errors_before_training(
    train_run: Callable[..., tuple[Path, Any]],
    select: dict[str, Any],
    settings: dict[str, Any],
    named: str,
) -> None:
    out, done = train_run(select, **settings)
    assert done.exit_code == 2, done.output
    assert done.stderr.strip().count("\n") == 0 and named in done.stderr
    assert not (out / "final").exists() and not (out / "checkpoints").exists()


def test_the_split_is_measured_in_blocks_of_queries(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path
) -> None:
    """Held-out queries ranked block by block (the model's and the teacher's top ten)
    give the figures of one queries x corpus table, allocating a fraction of it."""
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text().splitlines()]
    # Eight distinct documents a row (another row's first sentence, then the row's text):
    # copies would tie every query's own document with seven others to the last bit.
    sentences = [r["text"].split(". ") for r in rows]
    documents = [Document(f"{r['id']}-{n}", f"{sentences[(i + n) % len(rows)][0]}. {r['text']}")
                 for n in range(8) for i, r in enumerate(rows)]  # fmt: skip
    owned = [(f"{r['id']}-0", s) for r, row in zip(rows, sentences, strict=True) for s in row]
    owners, queries = [owner for owner, _ in owned], [query for _, query in owned]
    split = Split(documents, queries, owners, TeacherConfig(kind="fused"), "sample", 0)
    index = Validator(split).index(tiny_encoder)
    figures, peaks = [], []
    for cells in (len(documents) * len(queries), len(documents) * 8):
        monkeypatch.setattr(nearest, "CELLS", cells)
        tracemalloc.start()
        figures.append(Validator(split).measure(tiny_encoder, index))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # A block's product can round a score an ulp apart from the whole table's (another BLAS
    # kernel, as on one CI machine), which swaps two documents tied to the last bit; the
    # random encoder puts scores close (most within 0.96-0.985), so a few such swaps can
    # happen: each moves one query's figure by at most a half, and up to twenty pass.
    assert figures[1] == pytest.approx(figures[0], abs=10 / len(queries))
    assert figures[0]["teacher@10"] > 0
    assert len(nearest.query_blocks(len(queries), len(documents))) == -(-len(queries) // 8)
    assert peaks[1] < peaks[0] / 2  # the rest: the model, BM25, the query vectors
