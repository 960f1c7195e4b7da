"""The fused teacher past the index's `exact_below`: it scores each query's candidates with
the corpus's exact statistics instead of every document; where the candidates are the whole
corpus it gives the whole-corpus scores (both scales, with feedback), and with fewer the
z scale stays exact and the rank scale keeps the top of the teacher's order. Its BM25 index
is saved with the corpus state and loaded memory-mapped by the next process."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpus.embedder import embedder_path
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Document
from pipeline.embedding.inference import Embedder
from pipeline.teacher.lexical import Bm25Index
from pipeline.teacher.pooled import DenseMoments
from pipeline.teacher.scorers import FusedTeacher, Scoring
from tests.test_negatives import CORPUS

QUERIES = [
    "vaccine weakened pathogen immune response",
    "how is bread dough leavened",
    "antibiotics against bacterial infection",
    "opening moves in chess",
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> tuple[CorpusIndex, CorpusIndex]:
    """The CORPUS index searched exactly, and the same searched as past `exact_below`."""
    embedder = Embedder(embedder_path("all-MiniLM-L6-v2"))
    whole = CorpusIndex.build([Document(k, v) for k, v in CORPUS.items()], embedder)
    return whole, replace(whole, exact_below=0, state=tmp_path_factory.mktemp("state"))


def items(index: CorpusIndex) -> list[Scoring]:
    embedder = Embedder(embedder_path("all-MiniLM-L6-v2"))
    vectors = embedder.encode_queries(QUERIES, instruction="")
    rows: list[int | None] = [*range(len(index.doc_ids)), None]  # and one written text
    texts = [*index.texts, "a written text"]
    return [Scoring(q, v, texts, rows) for q, v in zip(QUERIES, vectors, strict=True)]


def test_the_moments_give_each_querys_corpus_statistics(indexes: tuple) -> None:
    whole, _ = indexes
    queries = np.stack([item.vector for item in items(whole)])
    cosines = queries @ whole.vectors.T
    mean, std = DenseMoments.of(whole.vectors).stats(queries)
    np.testing.assert_allclose(mean, cosines.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(std, cosines.std(axis=1), atol=1e-6)


@pytest.mark.parametrize("scale", ["z", "rank"])
@pytest.mark.parametrize("feedback", [0, 2])
def test_candidates_covering_the_corpus_give_the_whole_corpus_scores(
    indexes: tuple, scale: str, feedback: int
) -> None:
    whole, pooled = indexes
    asked = items(whole)

    def scores(index: CorpusIndex, depth: int = 256) -> list[list[float | None]]:
        teacher = FusedTeacher(index, 0.7, 0.3, scale, (feedback, 0.5), stemmer="english",
                               depth=depth)  # fmt: skip
        return teacher.score(asked)

    expected = scores(whole)
    got = scores(pooled)  # 8 documents: the top 256 of each side are all of them
    assert [s[-1] for s in got] == [None] * len(asked)  # a written text: no BM25 statistics
    np.testing.assert_allclose([s[:-1] for s in got], [s[:-1] for s in expected], atol=1e-5)
    few = scores(pooled, depth=2)
    if scale == "z" and not feedback:  # every asked text scored with the corpus's statistics
        np.testing.assert_allclose([s[:-1] for s in few], [s[:-1] for s in expected], atol=1e-5)
    for narrow, full in zip(few, expected, strict=True):  # the teacher's first document
        best = int(np.argmax(full[:-1]))
        assert narrow[best] == pytest.approx(full[best], abs=1e-5)


def test_bm25_is_saved_with_the_corpus_state_and_loaded_mapped(
    indexes: tuple, tmp_path: Path
) -> None:
    whole, _ = indexes
    stated = replace(whole, state=tmp_path / "state")
    built = FusedTeacher(stated, 0.7, 0.3, stemmer="english")
    expected = built.score(items(stated))
    folder = tmp_path / "state" / "bm25-english"
    assert (folder / "params.index.json").is_file() and not list(tmp_path.glob("state/.*"))
    made = folder.stat().st_mtime_ns
    loaded = Bm25Index(whole.texts, "english", folder)  # as the next run opens it
    assert isinstance(loaded.retriever.scores["data"], np.memmap)
    again = FusedTeacher(stated, 0.7, 0.3, stemmer="english").score(items(stated))
    assert again == expected and folder.stat().st_mtime_ns == made
