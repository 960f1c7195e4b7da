"""Semantic dedup's graph of kept queries by search expansion: how many repeats each finds
and what a query costs, against exact search, in one process.

Past `embedder.exact_below` kept queries, semantic dedup asks the graph for each new
query's single nearest kept query and calls it a repeat at `threshold` cosine (0.95) or
more. It searched as the corpus's graph does (expansion 512, set for recall@100); a repeat
is far closer to its kept query than a corpus's 100th neighbour is to a query, so a smaller
expansion finds it as surely for less (this bench chose `REPEAT_EXPANSION`). Kept
vectors: bench/nearest.py's Gaussian topics (harder for a graph than sentence vectors);
queries: half repeats (a kept vector turned by a random angle to cosine 0.95-0.99 with
it), half new vectors of the same topics. Prints the graph's build time per vector and,
per expansion, the time per query, the repeats found (of those exact search finds) and the
verdicts that differ from exact search's.

    python bench/semantic_graph.py --kept 100000 --queries 2000
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nearest import topics, unit  # noqa: E402

from pipeline.corpus.nearest import EXPANSION_SEARCH, exact_top  # noqa: E402
from pipeline.dedup.semantic import REPEAT_EXPANSION, SemanticDuplicates  # noqa: E402

THRESHOLD = 0.95  # filters' semantic dedup default


def repeats(kept: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` kept vectors, each turned to a cosine of 0.95-0.99 with itself."""
    source = kept[rng.integers(0, len(kept), count)]
    cosine = rng.uniform(0.95, 0.99, count).astype(np.float32)[:, None]
    noise = rng.normal(size=source.shape).astype(np.float32)
    noise = unit(noise - (noise * source).sum(axis=1, keepdims=True) * source)  # orthogonal
    return unit(cosine * source + np.sqrt(1 - cosine**2) * noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kept", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--expansions", type=int, nargs="+", default=[512, 128, 64, 32, 16])
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    kept = topics(args.kept, 384, seed=0)
    half = args.queries // 2
    queries = np.concatenate([repeats(kept, half, rng), topics(args.queries - half, 384, 2)])
    dedup = SemanticDuplicates(THRESHOLD, 384, exact_below=0)
    start = time.perf_counter()
    dedup.add(kept, [str(i) for i in range(len(kept))])
    build = time.perf_counter() - start
    print(f"{args.kept} kept vectors: graph built in {build:.1f} s "
          f"({1000 * build / args.kept:.2f} ms a vector, one thread)", flush=True)  # fmt: skip
    start = time.perf_counter()
    _, truth = exact_top(kept, queries, 1)
    exact_ms = 1000 * (time.perf_counter() - start) / len(queries)
    truth_repeat = truth[:, 0] >= THRESHOLD
    print(f"exact search: {exact_ms:.2f} ms a query; {truth_repeat.sum()} repeats "
          f"({truth_repeat[:half].sum()} of the {half} turned copies)", flush=True)  # fmt: skip
    assert dedup.graph is not None
    for expansion in args.expansions:
        dedup.graph.index.expansion_search = expansion
        start = time.perf_counter()
        scores, _ = dedup.nearest(queries)
        ms = 1000 * (time.perf_counter() - start) / len(queries)
        found = scores >= THRESHOLD
        name = {EXPANSION_SEARCH: " (the corpus's)", REPEAT_EXPANSION: " (semantic dedup's)"}
        print(f"expansion {expansion}{name.get(expansion, '')}: "
              f"{ms:.3f} ms a query ({exact_ms / ms:.1f}x exact search), repeats found "
              f"{(found & truth_repeat).sum()} of {truth_repeat.sum()}, verdicts unlike "
              f"exact search's {(found != truth_repeat).sum()}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
