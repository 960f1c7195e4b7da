"""The adapter's lesson in bounded memory: computed a block of queries at a time it equals
the whole table computed at once, and where each query is taught only part of the corpus
that part is the teacher's best documents and distinct others, with the whole table's
scores of them, each sampled one weighted for the part of the corpus it stands for."""

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapt.lesson import taught
from pipeline.adapt.stage import adapter_job, lesson
from pipeline.corpus import nearest
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import AdapterConfig
from pipeline.teacher.scorers import FusedTeacher

WORDS = [
    "wing",
    "lift",
    "pressure",
    "ink",
    "press",
    "spruce",
    "bark",
    "beetle",
    "tax",
    "law",
    "court",
    "river",
    "delta",
]


def queries(n: int) -> list[str]:
    """`n` distinct short queries over a few words (more than a block of them)."""
    return [f"{WORDS[i % 13]} {WORDS[(i // 13) % 13]} note {i}" for i in range(n)]


def test_the_lesson_in_blocks_equals_the_whole_table(
    monkeypatch: pytest.MonkeyPatch, tiny_encoder: Path, job_file: Callable[..., Path]
) -> None:
    settings = AdapterConfig(job=job_file(teacher={"kind": "fused"}), crops=1)
    asked = queries(300)
    monkeypatch.setattr(nearest, "CELLS", 1)  # one query a block (at least one)
    whole = lesson(tiny_encoder, asked, settings, seed=0)
    assert len(whole.texts) > 300  # the queries and the crops: hundreds of blocks
    teacher = FusedTeacher.from_config(whole.index, adapter_job(settings).teacher, "z")
    at_once = teacher.corpus_scores(whole.texts, Embedder(tiny_encoder).encode_queries(whole.texts))
    np.testing.assert_allclose(whole.targets, at_once, rtol=0, atol=1e-5)
    size = len(whole.index.doc_ids)
    assert whole.rows.shape == whole.targets.shape == (len(whole.texts), size)
    assert (whole.rows == np.arange(size)).all()
    # Taught part of the corpus: the same scores of fewer documents, the teacher's best first.
    bounded = {"top": 5, "sampled": 10, "whole_table_gib": 0}  # the table would not fit
    part = lesson(tiny_encoder, asked, settings.model_copy(update=bounded))
    assert part.rows.shape == part.targets.shape == (len(whole.texts), 15)
    np.testing.assert_allclose(part.targets, np.take_along_axis(at_once, part.rows, 1), atol=1e-5)
    np.testing.assert_allclose(part.targets[:, :5], -np.sort(-at_once, axis=1)[:, :5], atol=1e-5)
    # A sampled document stands for (size - top) / sampled of the rest in both softmaxes.
    assert whole.weights is None and part.weights is not None
    np.testing.assert_allclose(part.weights, [0] * 5 + [np.log((size - 5) / 10)] * 10, atol=1e-6)


def test_taught_rows_are_the_best_then_distinct_others_from_the_rest() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(40, 300)).astype(np.float32)
    rows, targets = taught(table, 10, 30, np.random.default_rng(1))
    assert rows.shape == targets.shape == (40, 40)
    np.testing.assert_array_equal(rows[:, :10], np.argsort(-table, axis=1)[:, :10])
    np.testing.assert_array_equal(targets, np.take_along_axis(table, rows, 1))
    assert all(len(set(row)) == 40 for row in rows)  # no document taught twice
    assert (rows >= 0).all() and (rows < 300).all()
    # The others are drawn from the whole rest of the corpus, not a corner of it.
    others = rows[:, 10:].ravel()
    assert others.min() < 30 and others.max() > 270


def test_past_exact_below_the_lesson_is_taught_from_the_teachers_candidates(
    tiny_encoder: Path, job_file: Callable[..., Path]
) -> None:
    """On a corpus the candidates cover, the lesson drawn from them has the whole table's
    best documents and scores, and distinct others from the rest of the corpus."""
    job = job_file(teacher={"kind": "fused", "feedback_docs": 2}, embedder={"exact_below": 0})
    bounded = {"top": 5, "sampled": 10, "whole_table_gib": 0}
    settings = AdapterConfig(job=job, crops=1, **bounded)
    part = lesson(tiny_encoder, queries(40), settings, seed=0)
    assert not part.index.exhaustive  # searched through the graph, scored on candidates
    teacher = FusedTeacher.from_config(part.index, adapter_job(settings).teacher, "z")
    at_once = teacher.corpus_scores(part.texts, Embedder(tiny_encoder).encode_queries(part.texts))
    size = len(part.index.doc_ids)
    assert part.rows.shape == part.targets.shape == (len(part.texts), 15)
    np.testing.assert_allclose(part.targets, np.take_along_axis(at_once, part.rows, 1), atol=1e-5)
    np.testing.assert_allclose(part.targets[:, :5], -np.sort(-at_once, axis=1)[:, :5], atol=1e-5)
    assert all(len(set(row)) == 15 for row in part.rows)  # the others are not the best
    assert part.rows[:, 5:].min() < size // 4 and part.rows[:, 5:].max() > 3 * size // 4
    np.testing.assert_allclose(part.weights, [0] * 5 + [np.log((size - 5) / 10)] * 10, atol=1e-6)
    # An index handed in (a validation split's, searched exactly) is searched as the job says.
    handed = lesson(tiny_encoder, queries(40), settings, seed=0,
                    index=replace(part.index, exact_below=10**9))  # fmt: skip
    assert not handed.index.exhaustive
    np.testing.assert_array_equal(handed.rows, part.rows)
