"""The corpus index's nearest documents: the HNSW graph a large corpus is searched through
returns exact search's results where both run, is kept in the dataset's state and opened
again by the next run, and mining through it picks exact search's negatives."""

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.config.job import NegativesConfig
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.nearest import Graph, exact_top
from pipeline.corpus.vectors import VectorStore
from pipeline.dataset.records import Candidate, Document
from pipeline.negatives.mining import mine


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors in 40 clusters (as a corpus's topics), and 60 queries near some."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(40, dim))
    corpus = unit(centers[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, dim)))
    queries = unit(corpus[:60] + 0.3 * rng.normal(size=(60, dim)))
    return corpus, queries


def documents(n: int) -> list[Document]:
    return [Document(f"d{i}", f"document number {i}") for i in range(n)]


def test_the_graph_returns_exact_search_results_on_a_small_corpus(tmp_path: Path) -> None:
    corpus, queries = clustered(1000)
    exact_rows, exact_scores = exact_top(corpus, queries, 100)
    # The exact order is the order of the full score table.
    assert np.allclose(exact_scores, -np.sort(-(queries @ corpus.T), axis=1)[:, :100])
    path = tmp_path / "graph.usearch"
    graph = Graph.open(corpus, tmp_path)
    rows, scores = graph.top(queries, 10)
    assert np.array_equal(rows, exact_rows[:, :10])
    assert np.allclose(scores, exact_scores[:, :10], atol=1e-5)
    deep = graph.top(queries, 100)[0]
    assert np.mean([len(set(a) & set(b)) for a, b in zip(deep, exact_rows, strict=True)]) > 99
    # Saved whole, and the next run opens the file instead of building again.
    made = path.stat().st_mtime_ns
    again = Graph.open(np.zeros((0, 32), dtype=np.float32), tmp_path)
    assert np.array_equal(again.top(queries, 100)[0], deep)
    assert path.stat().st_mtime_ns == made and not list(tmp_path.glob(".*.tmp"))
    # Where it finds fewer than asked (a query asks for more than the corpus holds).
    assert graph.top(queries[:2], 5000)[0].shape == (2, 1000)


def test_a_batchs_searches_of_one_query_are_one_search_with_the_same_results(
    tmp_path: Path,
) -> None:
    """The round trip's pool (100), the teacher's candidates (256) and mining (30) search
    the same query vectors: the corpus graph searches each once and gives every depth
    within its beam what a search of its own gives (a deeper k than the beam searches
    again)."""
    from usearch.index import Index

    corpus, queries = clustered(2000, seed=4)
    remembering = Graph.open(corpus, tmp_path)
    plain = Graph(Index.restore(str(tmp_path / "graph.usearch"), view=True))
    searched: list[int] = []
    search = remembering._search  # a spy passing every search through, to count them
    remembering._search = lambda q, k: searched.append(len(q)) or search(q, k)  # type: ignore
    for k in (100, 256, 30, 256, 1500, 30, 100):
        rows, scores = remembering.top(queries, k)
        own_rows, own_scores = plain.top(queries, k)
        assert np.array_equal(rows, own_rows) and np.array_equal(scores, own_scores)
    assert searched == [60, 60, 60]  # the first, 1500 (past the beam of 512), 30 after it
    mixed = np.concatenate([queries[:20], unit(queries[:20] + 0.1)])  # 20 kept, 20 new
    rows, _ = remembering.top(mixed, 30)
    assert searched[-1] == 20 and np.array_equal(rows, plain.top(mixed, 30)[0])
    assert not plain.beams.found and len(remembering.beams.found) == 80


def test_mining_through_the_graph_picks_exact_search_negatives(tmp_path: Path) -> None:
    corpus, queries = clustered(1000, seed=1)
    exact = CorpusIndex.from_vectors(documents(len(corpus)), corpus)
    graph = replace(exact, exact_below=0, state=tmp_path)
    assert exact.top(queries[:1], 5)[0].tolist() == graph.top(queries[:1], 5)[0].tolist()
    config = NegativesConfig(count=3, rank_start=2, rank_end=30, max_score_ratio=0.99)
    picked = []
    for index in (exact, graph):
        ids = documents(len(queries))
        pairs = [
            Candidate(d, "retrieval", "en", 8, [], vector=v)
            for d, v in zip(ids, queries, strict=True)
        ]
        mine(pairs, index, config)
        picked.append(pairs)
    for by_exact, by_graph in zip(*picked, strict=True):
        assert by_exact.negatives == by_graph.negatives
        assert np.allclose(by_exact.negative_scores, by_graph.negative_scores, atol=1e-5)
    assert sum(len(pair.negatives) == 3 for pair in picked[0]) > len(queries) // 2
    assert (tmp_path / "graph.usearch").is_file()


def test_round_trip_ranks_through_the_graph_are_exact_within_their_depth(tmp_path: Path) -> None:
    corpus, queries = clustered(1000, seed=2)
    exact = CorpusIndex.from_vectors(documents(len(corpus)), corpus)
    graph = replace(exact, exact_below=0, state=tmp_path)
    owners = [f"d{i}" for i in range(len(queries))]
    whole = exact.ranks(queries, owners, 10)
    bounded = graph.ranks(queries, owners, 10)
    # Inside the top 10 the same rank; beyond it "depth + 1", a miss either way.
    assert np.array_equal(np.where(whole <= 10, whole, 11), bounded)
    assert (whole <= 10).any() and (whole > 10).any()


def test_a_grown_corpus_grows_its_graph_and_another_builds_anew(tmp_path: Path) -> None:
    """A refresh whose corpus is the last one plus new documents at its end adds them to
    the stored graph (the base is deleted once the grown graph is saved); a corpus in
    another order builds its own."""
    corpus, queries = clustered(1000, seed=3)
    keys = [f"k{i}" for i in range(len(corpus))]
    store = VectorStore(tmp_path, {"embedder": "e", "backend": "torch", "fingerprint": "f"}, 32)
    store.add(keys, corpus)
    first = store.corpus_state(keys[:800])
    Graph.open(store.vectors(keys[:800]), first)
    assert (first / "graph.usearch").is_file()
    grown = store.corpus_state(keys)
    assert (grown / "base.usearch").is_file() and not first.exists()  # the old graph moved in
    graph = Graph.open(store.vectors(keys), grown)
    assert (grown / "graph.usearch").is_file() and not (grown / "base.usearch").exists()
    exact_rows = exact_top(corpus, queries, 10)[0]
    rows = graph.top(queries, 10)[0]
    assert np.mean([len(set(a) & set(b)) for a, b in zip(rows, exact_rows, strict=True)]) > 9.9
    assert (rows >= 800).any()  # the new documents are found
    shuffled = store.corpus_state(keys[::-1])
    assert not (shuffled / "base.usearch").exists() and not grown.exists()


def test_a_graph_saved_and_restored_grows_as_the_uninterrupted_one(tmp_path: Path) -> None:
    # What a run's checkpoint does with its semantic dedup's graph: save it, load it in the
    # resumed run, and add the later kept queries. usearch's own restore grows another graph.
    vectors = np.random.default_rng(3).standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    whole, first = Graph.empty(32, 64), Graph.empty(32, 64)
    whole.add(vectors)
    first.add(vectors[:1500])
    first.save(tmp_path / "first.usearch")
    resumed = Graph.restored(tmp_path / "first.usearch", 64)
    resumed.add(vectors[1500:])
    for graph, name in ((whole, "whole"), (resumed, "resumed")):
        graph.save(tmp_path / f"{name}.usearch")
    assert (tmp_path / "whole.usearch").read_bytes() == (tmp_path / "resumed.usearch").read_bytes()
    assert resumed.index.expansion_search == 64
