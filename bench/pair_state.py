"""What a run holds per kept pair, and whether it stays the same as pairs add up: query
dedup (exact keys, MinHash-LSH, semantic vectors: exact blocks or the HNSW graph) and the
request cache, fed synthetic pairs as a run feeds them (batches of 512 candidates whose
query vectors are rows of one matrix a batch, as the embedder returns them; two generations
cached per pair: the config stage's and the query stage's).

Each part runs alone in a child process (and all of them together), so its memory is its
own: the process's RSS after glibc's `malloc_trim` (as the job trims after each batch) at a
third of the pairs and at the end. Prints the bytes each further kept pair costs (the
marginal cost over the last two thirds), the projection to a million pairs, and
`state growth ratio R`: bytes per pair over the last third against the middle third (1 or
less: the state grows linearly with the pairs; more: something grows faster).

    python bench/pair_state.py [--pairs 150000] [--exact-below 0] [--parts exact near ...]
"""

import argparse
import ctypes
import gc
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dedup import synthetic_queries  # noqa: E402  (bench/dedup.py, beside this one)

from pipeline.config.job import DedupConfig  # noqa: E402
from pipeline.corpus.nearest import EXACT_BELOW  # noqa: E402
from pipeline.dataset.records import Candidate, Document  # noqa: E402
from pipeline.dedup.queries import QueryDedup  # noqa: E402
from pipeline.generation.backends.base import Result  # noqa: E402
from pipeline.generation.backends.engine_settings import read_cpuinfo  # noqa: E402
from pipeline.generation.cache import RequestCache  # noqa: E402

BATCH = 512
DIMENSION = 384
PARTS = ("exact", "near", "semantic", "cache", "all")
CONFIG_TEXT = '{{"character":"{}","question_type":"acquire_knowledge","difficulty":"phd"}}'


def rss() -> int:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def dedup_config(part: str) -> DedupConfig:
    off = {"enabled": False}
    return DedupConfig.model_validate({
        "exact": part in ("exact", "all"),
        "near": {} if part in ("near", "all") else off,
        "semantic": {} if part in ("semantic", "all") else off,
    })  # fmt: skip


def results(start: int, queries: list[str]) -> tuple[list[str], list[Result]]:
    """Two generations per pair as the retrieval family stores them, under sha256 keys."""
    keys, made = [], []
    for i, query in enumerate(queries, start):
        for text in (CONFIG_TEXT.format(f"persona {i % 466}"), json.dumps({"query": query})):
            keys.append(hashlib.sha256(f"{i}:{text}".encode()).hexdigest())
            made.append(Result(text, "stop", 700, 60, cached_tokens=448))
    return keys, made


def child(part: str, pairs: int, exact_below: int) -> None:
    """Feed `pairs` synthetic pairs to the part; print RSS at a third, two thirds, the end."""
    queries = synthetic_queries(pairs, dup_rate=0.05)
    vectors = np.random.default_rng(0).normal(size=(pairs, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with TemporaryDirectory() as folder:
        cache = RequestCache(Path(folder) / "cache") if part in ("cache", "all") else None
        dedup = (
            QueryDedup(dedup_config(part), "bench", DIMENSION, exact_below)
            if part != "cache"
            else None
        )
        marks, kept, start = [], 0, time.perf_counter()
        for first in range(0, pairs, BATCH):
            batch = queries[first : first + BATCH]
            if cache is not None:
                cache.add(*results(first, batch))
            if dedup is None:
                kept += len(batch)
            else:
                embedded = vectors[first : first + BATCH].copy()  # one matrix a batch, as a run's
                candidates = [
                    Candidate(Document(f"doc-{i:08d}", ""), "retrieval", "en", 8, [], query=q,
                              vector=embedded[i - first])
                    for i, q in enumerate(batch, first)
                ]  # fmt: skip
                kept += sum(verdict is None for verdict in dedup.check(candidates))
            done = first + len(batch)
            if done * 3 // pairs > (done - len(batch)) * 3 // pairs or done == pairs:
                marks.append((kept, rss()))
        seconds = time.perf_counter() - start
    print(json.dumps({"part": part, "marks": marks, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150_000)
    parser.add_argument("--exact-below", type=int, default=0,
                        help=f"semantic dedup's graph from this many kept ({EXACT_BELOW:,} in a "
                             "job); 0: the graph from the first, as a large run")  # fmt: skip
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        child(args.part, args.pairs, args.exact_below)
        return
    name, flags = read_cpuinfo()
    wide = " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    print(f"machine: {name}, {wide}; {args.pairs:,} pairs, exact_below {args.exact_below:,}")
    for part in args.parts:
        command = [sys.executable, str(Path(__file__).resolve()), "--part", part,
                   "--pairs", str(args.pairs), "--exact-below", str(args.exact_below)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        (k1, m1), (k2, m2), (k3, m3) = row["marks"][-3:]
        per_pair = (m3 - m1) / (k3 - k1)
        million = per_pair * 1e6 / 2**30
        print(f"{part:<9} {per_pair:7.0f} B per kept pair ({k1:,} -> {k3:,} kept), "
              f"{million:5.2f} GiB at a million, {row['seconds']:6.1f} s")  # fmt: skip
        if part == "all":
            growth = ((m3 - m2) / (k3 - k2)) / ((m2 - m1) / (k2 - k1))
            print(f"state growth ratio {growth:.2f}")


if __name__ == "__main__":
    main()
