"""The corpus index's graph against exact search, in one process: recall@10 and recall@100
of the graph's top documents (exact search's are the truth), the time per query of each
and the graph's build time, for a corpus of N unit vectors; then a batch's searches of
the same queries (the checks': 100, 256, 30 and 256 deep) separately and from the beams
the corpus graph keeps (pipeline.corpus.nearest.Beams).

The vectors: a dataset's stored corpus vectors (`--dataset`, the rows of
state/corpus-vectors, queries their noisy copies) or, by default, a seeded mixture of
Gaussian topics in 384 dimensions (all-MiniLM-L6-v2's), a harder case for a graph than
real sentence vectors (whose intrinsic dimension is lower).

    python bench/nearest.py --n 100000 --queries 500
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.corpus.nearest import EXPANSION_SEARCH, GRAPH, Graph, exact_top
from pipeline.corpus.vectors import FOLDER, KEYS, VECTORS
from pipeline.generation.backends.engine_settings import read_cpuinfo

CHECKS = (100, 256, 30, 256)  # the round trip's pool, the teacher, mining, the teacher again


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def topics(n: int, dim: int, seed: int) -> np.ndarray:
    """`n` vectors around n/100 topic centres (spread as wide as the centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 100), dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: bounded memory at a million rows
        size = min(100_000, n - start)
        picked = centres[rng.integers(0, len(centres), size)]
        out[start : start + size] = unit(picked + rng.normal(size=(size, dim)).astype(np.float32))
    return out


def stored(dataset: Path) -> np.ndarray:
    """A dataset's stored corpus vectors (pipeline.corpus.vectors)."""
    folder = dataset / FOLDER
    rows = len((folder / KEYS).read_text(encoding="utf-8").split("\n")) - 1
    return np.fromfile(folder / VECTORS, dtype=np.float32).reshape(rows, -1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of exact search's top documents the graph found."""
    hits = [len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)]
    return float(np.sum(hits) / truth.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="corpus size (synthetic)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--dataset", type=Path, help="use this dataset's corpus vectors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expansion", type=int, nargs="*", default=[256, 1024],
                        help="search depths (ef) to try besides the default")  # fmt: skip
    args = parser.parse_args()
    corpus = stored(args.dataset) if args.dataset else topics(args.n, args.dim, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    picked = corpus[rng.choice(len(corpus), min(args.queries, len(corpus)), replace=False)]
    queries = unit(picked + 0.05 * rng.normal(size=picked.shape).astype(np.float32))
    start = time.perf_counter()
    truth, _ = exact_top(corpus, queries, 100)
    exact_s = time.perf_counter() - start
    name, flags = read_cpuinfo()
    wide = " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    print(f"machine: {name}, {os.cpu_count()} cores, {wide}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / GRAPH
        start = time.perf_counter()
        graph = Graph.open(corpus, Path(folder))
        build_s = time.perf_counter() - start
        print(f"corpus {len(corpus):,} x {corpus.shape[1]}, {len(queries)} queries; graph "
              f"build {build_s:.1f} s ({len(corpus) / build_s:,.0f} vectors/s, one thread), "
              f"file {path.stat().st_size / 2**20:,.0f} MiB; exact search "
              f"{1e3 * exact_s / len(queries):.2f} ms per query")  # fmt: skip
        for expansion in sorted({EXPANSION_SEARCH, *args.expansion}):
            graph.index.expansion_search = expansion
            start = time.perf_counter()
            found, _ = graph.top(queries, 100)
            graph_s = time.perf_counter() - start
            mark = " (the default)" if expansion == EXPANSION_SEARCH else ""
            print(f"ef {expansion}{mark}: graph {1e3 * graph_s / len(queries):.2f} ms per query "
                  f"(exact / graph {exact_s / graph_s:.1f}x), recall@10 "
                  f"{recall(found[:, :10], truth[:, :10]):.4f}, "
                  f"recall@100 {recall(found, truth):.4f}")  # fmt: skip
        graph.index.expansion_search = EXPANSION_SEARCH
        shared(graph, Graph(graph.index), unit(queries + 0.01))


def checks(graph: Graph, queries: np.ndarray) -> tuple[list[tuple[np.ndarray, ...]], float]:
    """A batch's checks' searches of the same queries: their results and seconds."""
    start = time.perf_counter()
    found = [graph.top(queries, k) for k in CHECKS]
    return found, time.perf_counter() - start


def shared(remembering: Graph, plain: Graph, queries: np.ndarray) -> None:
    """The checks' searches, each on its own (`plain`) and from the kept beams
    (`remembering`), with the results compared."""
    own, separate_s = checks(plain, queries)
    found, shared_s = checks(remembering, queries)
    same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(own, found, strict=True))  # fmt: skip
    print(f"a batch's searches ({', '.join(map(str, CHECKS))} deep): separately "
          f"{1e3 * separate_s / len(queries):.2f} ms per query, from the kept beams "
          f"{1e3 * shared_s / len(queries):.2f} ms (separate / shared "
          f"{separate_s / shared_s:.1f}x), the same results: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
