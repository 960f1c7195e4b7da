"""The job's fused teacher on a batch below `exact_below`: the peak memory of scoring a
batch's queries against the whole corpus a block at a time (`corpus.nearest.query_blocks`)
against all at once, in one process.

Below `embedder.exact_below` (100,000 documents) the teacher scores each query of a batch
against every document: the cosines, BM25's rows, their z-scores, the mix and (scale
`rank`) its order are each a queries x corpus table. A batch of 512 documents with three
queries each against 99,999 documents makes 1,536 x 99,999 tables: 0.6 GB each in float32.
Prints the peak numpy allocation (tracemalloc) and the wall of both, their ratios, and the
largest difference between their scores.

    python bench/teacher_blocks.py [--documents 99999] [--queries 1536]
"""

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nearest import topics  # noqa: E402
from scale import documents  # noqa: E402

from pipeline.corpus import nearest  # noqa: E402
from pipeline.corpus.index import CorpusIndex  # noqa: E402
from pipeline.dataset.records import Document  # noqa: E402
from pipeline.teacher.scorers import FusedTeacher, Scoring  # noqa: E402


def peak(score: Callable[[], list[list[float | None]]]) -> tuple[list, int, float]:
    """(scores, peak traced bytes, seconds) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    scores = score()
    seconds = time.perf_counter() - start
    top = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return scores, top, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=99_999)
    parser.add_argument("--queries", type=int, default=1536)
    args = parser.parse_args()
    corpus = [Document(f"d{i}", t) for i, t in enumerate(documents(args.documents))]
    index = CorpusIndex.from_vectors(corpus, topics(args.documents, 384, 0))
    teacher = FusedTeacher(index, 0.7, 0.3, "rank", stemmer="english")
    teacher.bm25  # noqa: B018  (indexed once, outside the measure)
    rows = np.random.default_rng(1).integers(0, args.documents, (args.queries, 4))
    asked = zip(documents(args.queries, 3), topics(args.queries, 384, 2), rows, strict=True)
    items = [Scoring(q, v, ["", "", "", ""], [int(r) for r in row]) for q, v, row in asked]
    blocks = len(nearest.query_blocks(args.queries, args.documents))
    blocked, blocked_peak, blocked_s = peak(lambda: teacher.score(items))
    nearest.CELLS = args.queries * args.documents  # one block: all queries at once
    whole, whole_peak, whole_s = peak(lambda: teacher.score(items))
    gap = float(np.abs(np.array(blocked, dtype=float) - np.array(whole, dtype=float)).max())
    print(f"{args.queries} queries x {args.documents} documents: at once peak "
          f"{whole_peak / 2**30:.2f} GiB, {whole_s:.1f} s; in {blocks} blocks peak "
          f"{blocked_peak / 2**30:.2f} GiB, {blocked_s:.1f} s")  # fmt: skip
    print(f"peak memory ratio {blocked_peak / whole_peak:.3f} (blocks / at once)")
    print(f"time ratio {blocked_s / whole_s:.2f}; largest score difference {gap:.1e}")


if __name__ == "__main__":
    main()
