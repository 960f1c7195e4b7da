"""Dedup: exact, near (MinHash-LSH through rensa) and semantic duplicates of queries are
caught with the first kept; duplicate documents are dropped; state crosses versions."""

import tracemalloc

import numpy as np
import pytest
from rensa import RMinHash

from pipeline.config.errors import UserError
from pipeline.config.job import DedupConfig
from pipeline.corpus.embedder import embedder_path
from pipeline.dataset.records import Candidate, Document
from pipeline.dedup import kept, semantic
from pipeline.dedup.blocks import RowBlocks
from pipeline.dedup.documents import DocumentDedup
from pipeline.dedup.near import SEED, NearDuplicates, lsh_bands
from pipeline.dedup.queries import QueryDedup, read_state
from pipeline.dedup.text import normalize, shingles
from pipeline.embedding.inference import Embedder
from pipeline.quality.consistency import embed_queries


def candidates(queries: list[str]) -> list[Candidate]:
    return [
        Candidate(Document(f"d{i}", f"passage {i}"), "retrieval", "en", 5, [], query=q)
        for i, q in enumerate(queries)
    ]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return Embedder(embedder_path("all-MiniLM-L6-v2"))


def reasons(verdicts: list) -> list[str | None]:
    return [v.reason if v is not None else None for v in verdicts]


def test_exact_near_and_semantic_duplicates(minilm: Embedder) -> None:
    batch = candidates(
        [
            "How long is the Danube river?",
            "how long is the danube river",  # exact after normalization
            "what is the total length of the danube river from the black forest in kilometres",
            "what is the total length of the danube river from the black forest in kilometers",
            "symptoms of vitamin d deficiency",
            "signs of vitamin d deficiency",  # a paraphrase: semantic (cosine 0.97)
            "best way to learn to play the guitar as an adult",
        ]
    )
    embed_queries(batch, minilm)
    dedup = QueryDedup(DedupConfig(), "all-MiniLM-L6-v2", minilm.dimension)
    verdicts = dedup.check(batch)
    assert reasons(verdicts) == [
        None,
        "exact_duplicate",
        None,
        "near_duplicate",
        None,
        "semantic_duplicate",
        None,
    ]
    assert "d0" in verdicts[1].detail and "d2" in verdicts[3].detail and "d4" in verdicts[5].detail
    assert verdicts[3].score >= 0.8 and verdicts[5].score >= 0.95 - 1e-6
    assert len(dedup.kept) == 4


def test_switched_off_checks_let_duplicates_through(minilm: Embedder) -> None:
    config = DedupConfig.model_validate(
        {"exact": False, "near": {"enabled": False}, "semantic": {"enabled": False}}
    )
    batch = candidates(["how long is the danube", "How long is the Danube?"])
    assert QueryDedup(config, None, 0).check(batch) == [None, None]


def test_near_duplicates_are_verified_and_keep_the_first() -> None:
    near = NearDuplicates(threshold=0.7, num_perm=128, shingle=1)
    texts = [normalize(t) for t in ["a b c d e f g h", "a b c d e f g x", "p q r s t u v w"]]
    found = near.check(texts, ["k1", "k2", "k3"])
    assert found[0] is None and found[2] is None
    assert found[1][0] == "k1" and found[1][1] >= 0.7
    first, second = RMinHash.from_token_sets([shingles(t, 1) for t in texts[:2]], 128, SEED)
    assert found[1][1] == first.jaccard(second)  # verified as rensa estimates
    assert lsh_bands(0.8, 128) == 16  # 8 rows per band: a 0.8 pair is a candidate 95%


def test_duplicate_documents_are_dropped() -> None:
    text = (
        "The Danube is the second-longest river in Europe. It rises in the Black Forest in "
        "Germany and flows for about 2,850 kilometres through ten countries, including "
        "Austria, Slovakia, Hungary, Croatia, Serbia, Bulgaria and Romania, before reaching "
        "the Black Sea in a wide delta."
    )
    docs = [
        Document("a", text),
        Document("b", text.upper()),  # the same after normalization
        Document("c", text.replace("wide delta", "large delta")),  # nearly the same
        Document("d", "Sourdough needs an active starter, flour, water and salt."),
        Document("a", text),  # same id and text again (a repeated row)
    ]
    kept, rejects = DocumentDedup(DedupConfig()).check(docs)
    assert [d.doc_id for d in kept] == ["a", "d"]
    assert {r.stage for r in rejects} == {"doc_dedup"}
    assert [(r.doc_id, r.reason) for r in rejects] == [
        ("b", "duplicate_document"),
        ("a", "duplicate_document"),
        ("c", "near_duplicate_document"),
    ]


@pytest.mark.parametrize("with_vectors", [True, False])
def test_kept_queries_are_written_out_not_held(
    tmp_path, monkeypatch: pytest.MonkeyPatch, with_vectors: bool
) -> None:
    """A run's kept queries go to a temp file as they are kept: what stays in memory is a
    small part of them, and the saved state holds every one, in order, with its vector
    (none at all where a kept query had none)."""
    monkeypatch.setattr(kept, "CHUNK", 300)  # the state in several row groups
    rng = np.random.default_rng(0)
    queries = [f"query {i} " + "x" * 500 for i in range(2_000)]
    batch = candidates(queries)
    for c in batch[: None if with_vectors else 1]:
        c.vector = rng.normal(size=384).astype(np.float32)
    off = {"enabled": False}
    config = DedupConfig.model_validate({"exact": False, "near": off, "semantic": off})
    dedup = QueryDedup(config, "all-MiniLM-L6-v2", 384, spill=tmp_path)
    tracemalloc.start()
    for start in range(0, len(batch), 256):
        dedup.check(batch[start : start + 256])
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < (500 + 384 * 4) * len(batch) / 10
    assert not list(tmp_path.iterdir())  # the temp file is unlinked
    dedup.save(tmp_path / "v0001")
    texts, vectors = read_state(tmp_path / "v0001", dedup.settings, need_vectors=True)
    assert texts == [normalize(q) for q in queries]
    if with_vectors:
        assert vectors is not None
        np.testing.assert_array_equal(vectors, np.stack([c.vector for c in batch]))
    else:
        assert vectors is None


def test_state_round_trip_and_incompatible_embedder(tmp_path, minilm: Embedder) -> None:
    first = candidates(["symptoms of vitamin d deficiency", "how do vaccines work"])
    embed_queries(first, minilm)
    dedup = QueryDedup(DedupConfig(), "all-MiniLM-L6-v2", minilm.dimension)
    dedup.check(first)
    version = tmp_path / "v0001"
    dedup.save(version)
    texts, vectors = read_state(version, dedup.settings, need_vectors=True)
    assert texts == ["symptoms of vitamin d deficiency", "how do vaccines work"]
    np.testing.assert_allclose(vectors, np.stack([c.vector for c in first]), atol=1e-6)

    later = QueryDedup(DedupConfig(), "all-MiniLM-L6-v2", minilm.dimension)
    assert later.load_versions([version]) == 2
    again = candidates(["How do vaccines work?", "signs of low vitamin D", "chess openings"])
    embed_queries(again, minilm)
    assert reasons(later.check(again))[0] == "exact_duplicate"
    assert reasons(later.check(candidates(["chess openings", "how do vaccines work"]))) == [
        "exact_duplicate",  # kept by the check above, so now a duplicate
        "exact_duplicate",  # from v0001
    ]

    other = QueryDedup(DedupConfig(), "/models/other-embedder", 768)
    with pytest.raises(UserError, match="dedup state was made with embedder all-MiniLM-L6-v2"):
        other.load_versions([version])


def repeating_batches() -> list[np.ndarray]:
    """Unit vectors in batches: fresh ones, and close copies of the first batch's (repeats)."""
    rng = np.random.default_rng(0)
    first = rng.normal(size=(12, 16))
    batches = [first, *(np.concatenate([rng.normal(size=(8, 16)), first[n : n + 4] + 0.01 * n])
                        for n in range(1, 6))]  # fmt: skip
    return [(b / np.linalg.norm(b, axis=1, keepdims=True)).astype(np.float32) for b in batches]


def test_semantic_duplicates_in_blocks_are_those_of_one_table() -> None:
    """Kept vectors searched block by block (memory bounded however many were kept) find
    the same repeats, matched to the same kept query, as one table of them all."""
    blocked, whole = (semantic.SemanticDuplicates(0.95, 16) for _ in range(2))
    blocked.vectors = RowBlocks(16, np.float32, block=5)
    for n, vectors in enumerate(repeating_batches()):
        keys = [f"q{n}-{i}" for i in range(len(vectors))]
        got = blocked.check(vectors, keys)
        assert got == whole.check(vectors, keys)
    assert blocked.vectors is not None and whole.vectors is not None
    assert len(blocked.vectors.blocks) > 3 and len(whole.vectors.blocks) == 1
    kept_rows = np.concatenate(list(blocked.vectors.parts()))
    assert np.array_equal(kept_rows, whole.vectors.blocks[0][: len(whole.keys)])
    assert sum(found is not None for found in got) > 0  # near copies of kept queries


@pytest.mark.parametrize("exact_below", [0, 30])
def test_past_exact_below_kept_queries_are_searched_through_a_graph(exact_below: int) -> None:
    """From `exact_below` kept queries on, a graph of them (their vectors moved in) finds
    the repeats exact search finds, matched to the same kept query."""
    exact = semantic.SemanticDuplicates(0.95, 16)
    graphed = semantic.SemanticDuplicates(0.95, 16, exact_below=exact_below)
    found = []
    for n, vectors in enumerate(repeating_batches()):
        keys = [f"q{n}-{i}" for i in range(len(vectors))]
        expected = exact.check(vectors, keys)
        assert (graphed.graph is not None) == (len(graphed.keys) >= max(exact_below, 1))
        found.append(graphed.check(vectors, keys))
        assert found[-1] == [
            None if e is None else (e[0], pytest.approx(e[1], abs=1e-5)) for e in expected
        ]
    assert graphed.graph is not None and graphed.graph.size == len(graphed.keys) == len(exact.keys)
    assert graphed.vectors is None  # the vectors live in the graph alone
    assert sum(match is not None for batch in found for match in batch) >= 5 * 4
