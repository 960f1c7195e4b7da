"""The adapter's lesson past `exact_below`: each query taught from the fused teacher's
candidates (`taught_pooled`) against a row of the whole corpus scored and cut (`taught`):
the time per lesson query at N documents, and how much of the whole row's best documents
the candidates find (with the same scores).

The texts (BM25's side) are bench/scale.py's corpus: real prose recombined, seeded. The
vectors (the embedder's side) are bench/nearest.py's seeded mixture of Gaussian topics:
embedding 100,000 documents with MiniLM takes most of an hour on two cores, and neither
path's time depends on what the vectors mean. The queries are sentences of the corpus (as
the adapter's crops are) with a noisy copy of their document's vector. The one-off costs
of a corpus state (BM25 indexed and saved, the graph, the corpus's moments) are printed
apart. Prints per N the ms per lesson query of each path and their ratio, the peak of what
each allocates, then `time per query ratio R` (largest N / smallest) for each path.

    python bench/lesson_scale.py --sizes 10000 100000 --queries 256
"""

import argparse
import os
import re
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from nearest import topics, unit  # noqa: E402
from scale import write_corpus  # noqa: E402

from pipeline.adapt.lesson import taught, taught_pooled  # noqa: E402
from pipeline.config.input import InputConfig  # noqa: E402
from pipeline.config.job import TeacherConfig  # noqa: E402
from pipeline.corpus.columns import CorpusColumns  # noqa: E402
from pipeline.corpus.index import CorpusIndex  # noqa: E402
from pipeline.corpus.reader import read_batches  # noqa: E402
from pipeline.generation.backends.engine_settings import read_cpuinfo  # noqa: E402
from pipeline.teacher.scorers import FusedTeacher  # noqa: E402

TOP, SAMPLED = 256, 64  # the adapter's defaults (pipeline.embedding.train_config)
Taught = tuple[np.ndarray, np.ndarray]  # a lesson's rows and targets


def timed(step: str, step_run: Callable[[], object]) -> None:
    """Run a one-off step of a corpus state and print its seconds."""
    start = time.perf_counter()
    step_run()
    print(f"  {step}: {time.perf_counter() - start:.1f} s", flush=True)


def run(lesson: Callable[[], Taught]) -> tuple[Taught, float, int]:
    """A lesson's (rows, targets), its seconds, and the peak of what it allocated (a second
    call under tracemalloc, which slows allocation, so the time is the first call's)."""
    start = time.perf_counter()
    out = lesson()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    lesson()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def agreement(whole: Taught, part: Taught, depth: int = TOP) -> tuple[float, float]:
    """The share of each query's whole-row best `depth` the candidates' best `depth` hold,
    and the largest difference of a shared document's score."""
    found, gap = [], 0.0
    for wr, wt, pr, pt in zip(*whole, *part, strict=True):
        best = dict(zip(wr[:depth].tolist(), wt[:depth].tolist(), strict=True))
        mine = dict(zip(pr[:depth].tolist(), pt[:depth].tolist(), strict=True))
        shared = best.keys() & mine.keys()
        found.append(len(shared) / depth)
        gap = max(gap, max((abs(best[r] - mine[r]) for r in shared), default=0.0))
    return float(np.mean(found)), gap


def measure(n: int, queries: int, folder: Path) -> dict[str, float]:
    corpus = folder / f"corpus-{n}.jsonl"
    write_corpus(corpus, n)
    documents = [d for docs, _ in read_batches(InputConfig(path=corpus)) for d in docs]
    vectors = topics(n, 384, seed=0)
    state = folder / f"state-{n}"
    pooled = CorpusIndex(CorpusColumns.from_documents(documents), vectors, state, exact_below=0)
    exact = replace(pooled, exact_below=n + 1)
    config = TeacherConfig(kind="fused")
    whole_teacher = FusedTeacher.from_config(exact, config, "z")
    candidates = FusedTeacher.from_config(pooled, config, "z")
    print(f"N={n}: corpus state (once per state)", flush=True)
    timed("BM25 indexed and saved", lambda: whole_teacher.bm25)
    timed("BM25 opened memory-mapped", lambda: candidates.bm25)
    timed("graph built", lambda: pooled.top(vectors[:1], 1))
    timed("moments", lambda: candidates.moments)
    rng = np.random.default_rng(1)
    rows = rng.choice(n, queries, replace=False)
    texts = [re.split(r"(?<=[.!?])\s+", documents[r].text)[1] for r in rows]
    asked = unit(vectors[rows] + 0.05 * rng.normal(size=(queries, 384)).astype(np.float32))
    whole = lambda: taught(whole_teacher.corpus_scores(texts, asked), TOP, SAMPLED,  # noqa: E731
                           np.random.default_rng(2))  # fmt: skip
    part = lambda: taught_pooled(candidates, texts, asked, TOP, SAMPLED,  # noqa: E731
                                 np.random.default_rng(2))  # fmt: skip
    (whole_rows, whole_targets), whole_s, whole_peak = run(whole)
    (part_rows, part_targets), part_s, part_peak = run(part)
    whole_s, part_s = whole_s / queries, part_s / queries
    found, gap = agreement((whole_rows, whole_targets), (part_rows, part_targets))
    head = {k: agreement((whole_rows, whole_targets), (part_rows, part_targets), k)[0]
            for k in (10, 50)}  # fmt: skip
    print(f"  lesson per query: whole row {1e3 * whole_s:.2f} ms, candidates "
          f"{1e3 * part_s:.2f} ms (whole / candidates {whole_s / part_s:.1f}x); the whole "
          f"row's best 10 / 50 / {TOP} among the candidates' best as many: {head[10]:.4f} / "
          f"{head[50]:.4f} / {found:.4f}, their scores within {gap:.1e}", flush=True)  # fmt: skip
    print(
        f"  peak memory of the lesson's {queries} queries (tracemalloc): whole rows "
        f"{whole_peak / 2**20:.0f} MiB, candidates {part_peak / 2**20:.0f} MiB",
        flush=True,
    )
    return {"whole": whole_s, "part": part_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=256)
    args = parser.parse_args()
    name, flags = read_cpuinfo()
    wide = " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    print(f"machine: {name}, {os.cpu_count()} cores, {wide}")
    with tempfile.TemporaryDirectory() as folder:
        results = {n: measure(n, args.queries, Path(folder)) for n in sorted(args.sizes)}
    small, large = min(results), max(results)
    for path, label in (("whole", "whole row"), ("part", "candidates")):
        ratio = results[large][path] / results[small][path]
        print(f"{label}: time per query ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
