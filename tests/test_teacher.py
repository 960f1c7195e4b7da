"""The teacher: fused scores equal a hand computation and are stored positive first; the rank
scale gives the embedder's scores in the teacher's order; what a preferred negative does
under each policy; the round trip judged by the teacher keeps a pair the student misses;
negatives mined in the teacher's order; feedback moves the query as defined; BM25 stems
(a query's "electrons" meets a document's "electron"); a CrossEncoder folder scores too; a job
writes the column."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import Stemmer

from pipeline.config.job import NegativesConfig, TeacherConfig, load_config
from pipeline.corpus import nearest
from pipeline.corpus.embedder import embedder_path
from pipeline.corpus.index import CorpusIndex
from pipeline.dataset.records import Candidate, Document
from pipeline.embedding.inference import Embedder
from pipeline.negatives.mining import mine
from pipeline.quality.consistency import RoundTripFilter, embed_queries
from pipeline.run.job import run_job
from pipeline.teacher.judge import TeacherJudge
from pipeline.teacher.lexical import Bm25Index, bm25s_module
from pipeline.teacher.scorers import CrossEncoderTeacher, FusedTeacher, Scoring
from tests.test_negatives import CORPUS

QUERY = "vaccine weakened pathogen immune response"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(embedder_path("all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def index(embedder: Embedder) -> CorpusIndex:
    return CorpusIndex.build([Document(k, v) for k, v in CORPUS.items()], embedder)


def pair(embedder: Embedder, query: str = QUERY, doc: str = "pos", **fields: Any) -> Candidate:
    candidate = Candidate(Document(doc, CORPUS[doc]), "retrieval", "en", 5, [], query=query)
    for name, value in fields.items():
        setattr(candidate, name, value)
    embed_queries([candidate], embedder)
    return candidate


def by_hand(query: str, vector: np.ndarray, index: CorpusIndex, weights: tuple[float, float]):
    """The fused score of every document, computed here from its definition."""
    cos = index.vectors @ vector
    bm25s = bm25s_module()
    stem = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(list(index.texts), stopwords="en", stemmer=stem, return_ids=False,
                            show_progress=False)  # fmt: skip
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    query_tokens = bm25s.tokenize([query], stopwords="en", stemmer=stem, return_ids=False,
                                  show_progress=False)  # fmt: skip
    lexical = bm25.get_scores(query_tokens[0])
    z_cos = (cos - cos.mean()) / cos.std()
    z_bm25 = (lexical - lexical.mean()) / lexical.std()
    return cos.mean() + cos.std() * (weights[0] * z_cos + weights[1] * z_bm25)


def test_bm25_stems_query_and_documents_alike() -> None:
    texts = ["An electron orbits the nucleus of the atom.", "Tides follow the moon."]
    query = ["electrons orbiting"]  # neither word as written is in any document
    stemmed = Bm25Index(texts, "english").scores(query)[0]
    assert stemmed[0] > 0 and stemmed[1] == 0
    assert not Bm25Index(texts, "none").scores(query).any()


def test_fused_scores_match_a_hand_computation_and_are_stored_in_order(
    embedder: Embedder, index: CorpusIndex
) -> None:
    config = TeacherConfig(kind="fused", on_preferred_negative="keep")
    fused = FusedTeacher(index, 0.7, 0.3, stemmer="english")
    judge = TeacherJudge(fused, config, index)
    assert "bm25" not in vars(fused)  # indexed on first use (a Ray driver never scores)
    negatives = [CORPUS["herd"], CORPUS["bread"], "a written text outside the corpus"]
    candidate = pair(embedder, negatives=negatives, negative_scores=[0.5, 0.1, 0.0])
    assert judge.score([candidate]) == [None]
    assert "bm25" in vars(fused)
    expected = by_hand(QUERY, candidate.vector, index, (0.7, 0.3))
    rows = [index.rows["pos"], index.rows["herd"], index.rows["bread"]]
    scores = candidate.teacher_scores
    assert len(scores) == 4 and scores[3] is None  # not a corpus document: no BM25 statistics
    np.testing.assert_allclose(scores[:3], expected[rows], atol=1e-6)
    assert scores[0] > scores[1] > scores[2]  # positive first; the vaccine text beats bread
    # Without BM25 the fused teacher is the embedder itself: its scores are the cosines.
    alone = TeacherJudge(FusedTeacher(index, 1.0, 0.0, stemmer="english"), config, index)
    alone.score([candidate])
    cosines = index.vectors[rows] @ candidate.vector
    np.testing.assert_allclose(candidate.teacher_scores[:3], cosines, atol=1e-6)


def test_a_batch_is_scored_in_blocks_with_the_scores_of_one_table(
    monkeypatch: pytest.MonkeyPatch, embedder: Embedder, index: CorpusIndex
) -> None:
    """A job's batch scored against a corpus below `exact_below` goes a block of queries at
    a time (a batch x corpus table near that size is GBs): the same scores as at once."""
    queries = [QUERY, "bread flour oven", "herd of cattle grazing", "tides and the moon"]
    rows = list(range(len(index.doc_ids)))  # every document, and a text outside the corpus
    items = [Scoring(q, pair(embedder, q).vector, [*index.texts, "no such text"], [*rows, None])
             for q in queries]  # fmt: skip
    teacher = FusedTeacher(index, 0.7, 0.3, "rank", stemmer="english", feedback=(2, 0.5))
    at_once = teacher.score(items)
    monkeypatch.setattr(nearest, "CELLS", 1)  # one query a block
    assert len(nearest.query_blocks(len(items), len(index.doc_ids))) == len(items)
    blocked = teacher.score(items)
    assert all(row[-1] is None and None not in row[:-1] for row in at_once + blocked)
    # A one-row product rounds apart from a four-row one (another BLAS kernel): to 1e-6.
    np.testing.assert_allclose([r[:-1] for r in blocked], [r[:-1] for r in at_once], atol=1e-6)
    assert len({tuple(row) for row in at_once}) == len(queries)


def test_rank_scale_gives_the_embedder_scores_in_the_teacher_order(
    embedder: Embedder, index: CorpusIndex
) -> None:
    vector = pair(embedder).vector
    # BM25 alone as the mix: on this small corpus a lighter share leaves the order as it is.
    z_scaled = FusedTeacher(index, 0.0, 1.0, stemmer="english").corpus_scores(
        [QUERY], vector[None]
    )[0]
    ranked = FusedTeacher(index, 0.0, 1.0, "rank", stemmer="english").corpus_scores(
        [QUERY], vector[None]
    )[0]
    cosines = index.vectors @ vector
    # The same values as the embedder's cosines, the same order as the fused mix: the
    # document the mix ranks k-th gets the embedder's k-th highest cosine.
    np.testing.assert_allclose(np.sort(ranked), np.sort(cosines), atol=1e-6)
    assert list(np.argsort(-ranked, kind="stable")) == list(np.argsort(-z_scaled, kind="stable"))
    by_rank = np.sort(cosines)[::-1][np.argsort(np.argsort(-z_scaled, kind="stable"))]
    np.testing.assert_allclose(ranked, by_rank, atol=1e-6)
    # BM25 reorders this corpus, so the targets are not the cosines themselves.
    assert list(np.argsort(-cosines)) != list(np.argsort(-z_scaled))
    assert not np.allclose(ranked, cosines)
    # Without BM25 the order is the embedder's own: rank scale gives back the cosines.
    alone = FusedTeacher(index, 1.0, 0.0, "rank", stemmer="english").corpus_scores(
        [QUERY], vector[None]
    )[0]
    np.testing.assert_allclose(alone, cosines, atol=1e-6)


def test_feedback_moves_the_query_toward_the_top_documents_of_the_mix(
    embedder: Embedder, index: CorpusIndex
) -> None:
    vector = pair(embedder).vector
    config = TeacherConfig(kind="fused", feedback_docs=2, feedback_weight=0.5)
    fed = FusedTeacher.from_config(index, config, "z").corpus_scores([QUERY], vector[None])[0]
    # By hand: the mix's top 2, the query vector moved half their mean's way and renormalized,
    # the mix taken again with the moved cosines, back on the original query's cosine scale.
    plain = by_hand(QUERY, vector, index, (0.7, 0.3))
    top = np.argsort(-plain, kind="stable")[:2]
    moved = vector + 0.5 * index.vectors[top].mean(axis=0)
    moved /= np.linalg.norm(moved)
    again, moved_cos = by_hand(QUERY, moved, index, (0.7, 0.3)), index.vectors @ moved
    mix = (again - moved_cos.mean()) / moved_cos.std()
    cos = index.vectors @ vector
    np.testing.assert_allclose(fed, cos.mean() + cos.std() * mix, atol=1e-5)
    assert not np.allclose(fed, plain, atol=1e-3)  # the feedback changed the scores
    with pytest.raises(ValueError, match="feedback are for kind fused"):
        TeacherConfig(kind="llm", feedback_docs=3)


def test_a_preferred_negative_under_each_policy(embedder: Embedder, index: CorpusIndex) -> None:
    # The query fits the paraphrase at least as well as the positive (planted false negative).
    negatives = [CORPUS["paraphrase"], CORPUS["bread"]]
    teacher = FusedTeacher(index, 0.5, 0.5, stemmer="english")
    query = "teaches the body's immune defences with a harmless fragment of a germ"

    def judged(policy: str) -> tuple[Candidate, Any]:
        candidate = pair(embedder, query, negatives=list(negatives), negative_scores=[0.9, 0.1])
        judge = TeacherJudge(teacher, TeacherConfig(kind="fused", on_preferred_negative=policy),
                             index)  # fmt: skip
        return candidate, judge.score([candidate])[0]

    kept, verdict = judged("keep")
    assert verdict is None and kept.teacher_scores[1] >= kept.teacher_scores[0]
    preferred = kept.teacher_scores[1]

    dropped, verdict = judged("drop_negative")
    assert verdict is None and dropped.negatives == [CORPUS["bread"]]
    assert dropped.negative_scores == [0.1] and len(dropped.teacher_scores) == 2

    _, verdict = judged("drop_pair")
    assert verdict is not None and verdict.reason == "teacher_prefers_negative"
    assert verdict.stage == "teacher" and verdict.score == pytest.approx(
        preferred - kept.teacher_scores[0]
    )

    relabeled, verdict = judged("relabel")
    assert verdict is None
    assert relabeled.positive_text == CORPUS["paraphrase"]  # the teacher's preferred candidate
    assert relabeled.negatives == [POSITIVE_TEXT, CORPUS["bread"]]
    assert relabeled.teacher_scores[0] == pytest.approx(preferred)


POSITIVE_TEXT = CORPUS["pos"]


def test_round_trip_by_the_teacher_keeps_what_the_student_misses(
    embedder: Embedder, index: CorpusIndex
) -> None:
    # A rare exact term ("B cells") that BM25 weighs and the small embedder does not.
    candidate = pair(embedder, "proteins made by B cells", doc="antibodies")
    student_rank = int(index.ranks(candidate.vector[None], ["antibodies"], 10)[0])
    judge = TeacherJudge(
        FusedTeacher(index, 0.3, 0.7, stemmer="english"), TeacherConfig(kind="fused"), index
    )
    [verdict] = judge.round_trip([candidate], RoundTripFilter(top_k=1, judge="teacher"))
    assert verdict is None and candidate.scores["round_trip_rank"] == 1
    assert student_rank >= 1
    miss = pair(embedder, "how to bake sourdough bread", doc="antibodies")
    [verdict] = judge.round_trip([miss], RoundTripFilter(top_k=1, judge="teacher"))
    assert verdict is not None and verdict.reason == "round_trip_miss"


def test_negatives_ranked_by_the_teacher_come_in_its_order_with_its_scores(
    embedder: Embedder, index: CorpusIndex
) -> None:
    teacher = FusedTeacher(index, 0.3, 0.7, stemmer="english")
    judge = TeacherJudge(teacher, TeacherConfig(kind="fused"), index)
    config = NegativesConfig(count=3, rank_start=0, rank_end=8, ranked_by="teacher")
    query = "immune system infection"
    by_teacher, by_embedder = pair(embedder, query, "herd"), pair(embedder, query, "herd")
    assert mine([by_teacher], index, config, judge.ranking) == 0
    mine([by_embedder], index, config)
    # By hand: the teacher's scores of the whole corpus, its order, without the positive
    # and what the guard drops (above 0.95 of the positive's teacher score).
    fused = teacher.corpus_scores([query], by_teacher.vector[None])[0]
    ceiling = 0.95 * fused[index.rows["herd"]]
    expected = [int(r) for r in np.argsort(-fused, kind="stable")
                if index.doc_ids[r] != "herd" and fused[r] <= ceiling][:3]  # fmt: skip
    assert by_teacher.negatives == [index.texts[r] for r in expected]
    assert by_teacher.negative_scores == pytest.approx([float(fused[r]) for r in expected])
    assert by_teacher.negatives != by_embedder.negatives  # the orders differ here


def test_cross_encoder_folder_scores_pairs(tiny_cross_encoder: Path, embedder: Embedder,
                                           index: CorpusIndex) -> None:  # fmt: skip
    from sentence_transformers import CrossEncoder

    teacher = CrossEncoderTeacher(str(tiny_cross_encoder), batch_size=4)
    assert "model" not in vars(teacher)  # loaded on first use (a Ray driver never scores)
    config = TeacherConfig(kind="cross_encoder", model="x", on_preferred_negative="keep")
    judge = TeacherJudge(teacher, config, index)
    candidate = pair(embedder, negatives=["a written text outside the corpus"],
                     negative_scores=[0.0])  # fmt: skip
    judge.score([candidate])
    reference = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
        [(QUERY, CORPUS["pos"]), (QUERY, "a written text outside the corpus")]
    )
    assert len(candidate.teacher_scores) == 2  # a CrossEncoder scores any text
    np.testing.assert_allclose(candidate.teacher_scores, reference, rtol=1e-5)


def test_a_job_writes_teacher_scores(
    generator: Any, job_file: Callable[..., Path], tmp_path: Path
) -> None:
    config = load_config(job_file(teacher={"kind": "fused", "on_preferred_negative": "keep"},
                                  languages={"query": ["en"]}))  # fmt: skip
    summary = run_job(config, generator=generator, limit=12, progress=False)
    rows = pq.read_table(summary.version_dir / "data").to_pylist()
    assert rows
    for row in rows:
        assert len(row["teacher_scores"]) == 1 + len(row["negatives"])
    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    assert manifest["config"]["teacher"]["kind"] == "fused"
    assert any(step["step"] == "teacher" for step in manifest["funnel"])
