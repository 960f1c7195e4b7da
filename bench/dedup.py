"""Near-duplicate dedup of synthetic queries: the pipeline's dedup stage (rensa MinHash-LSH,
candidates verified) against a plain datasketch MinHash-LSH loop on the same data.

Each side runs in its own child process, so its peak memory (max RSS) is its own; both
use 128 permutations, word-bigram shingles and a 0.8 threshold, and keep the first query
of each near-duplicate group. Prints queries/s of each side, the ratio, peak memory and
how many duplicates each found.

    python bench/dedup.py [--queries 100000] [--dup-rate 0.2]
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

VOCABULARY = """
how what why when where which best cheap fast easy guide learn make fix build use river
mountain bread chess guitar python vaccine battery solar engine recipe garden tax loan
insurance laptop phone camera bike train flight hotel visa passport museum history physics
chemistry biology protein enzyme photosynthesis climate ocean storm without with for in on
at to from of and or the a an my your their home city school
"""
WORDS = VOCABULARY.split()
NUM_PERM, THRESHOLD, SHINGLE = 128, 0.8, 2


def synthetic_queries(count: int, dup_rate: float, seed: int = 0) -> list[str]:
    """Queries of 8-16 random words; `dup_rate` of them copy an earlier query with one word
    changed at its end (a near duplicate above the threshold)."""
    rng = random.Random(seed)
    queries: list[str] = []
    for _ in range(count):
        if queries and rng.random() < dup_rate:
            words = rng.choice(queries).split()
            words[-1] = rng.choice(WORDS)
            queries.append(" ".join(words))
        else:
            queries.append(" ".join(rng.choices(WORDS, k=rng.randint(8, 16))))
    return queries


def pipeline_side(queries: list[str]) -> Callable[[], int]:
    """The pipeline's dedup stage (QueryDedup, near-duplicates only) over the executor's
    batches of candidates; the candidates are built before the clock starts."""
    from pipeline.config.job import DedupConfig
    from pipeline.dataset.records import Candidate, Document
    from pipeline.dedup.queries import QueryDedup

    config = DedupConfig.model_validate(
        {"exact": False, "semantic": {"enabled": False},
         "near": {"threshold": THRESHOLD, "num_perm": NUM_PERM, "shingle": SHINGLE}}
    )  # fmt: skip
    candidates = [
        Candidate(Document(str(i), ""), "retrieval", "en", 8, [], query=q)
        for i, q in enumerate(queries)
    ]
    batch = 4096

    def run() -> int:
        dedup = QueryDedup(config, None, 0)
        return sum(
            v is not None
            for start in range(0, len(candidates), batch)
            for v in dedup.check(candidates[start : start + batch])
        )

    return run


def datasketch_side(queries: list[str]) -> Callable[[], int]:
    """A plain datasketch loop: MinHash per query, query the LSH, insert if new."""
    from datasketch import MinHash, MinHashLSH

    from pipeline.dedup.text import normalize, shingles

    def run() -> int:
        lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
        found = 0
        for i, query in enumerate(queries):
            minhash = MinHash(num_perm=NUM_PERM)
            for shingle in shingles(normalize(query), SHINGLE):
                minhash.update(shingle.encode())
            if lsh.query(minhash):
                found += 1
            else:
                lsh.insert(str(i), minhash)
        return found

    return run


def child(side: str, count: int, dup_rate: float) -> None:
    queries = synthetic_queries(count, dup_rate)
    run = (pipeline_side if side == "pipeline" else datasketch_side)(queries)  # imports too
    start = time.perf_counter()
    found = run()
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "seconds": seconds, "found": found, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--dup-rate", type=float, default=0.2)
    parser.add_argument("--side", choices=["pipeline", "datasketch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args.side, args.queries, args.dup_rate)
        return
    results = {}
    for side in ("pipeline", "datasketch"):
        command = [sys.executable, str(Path(__file__).resolve()), "--side", side,
                   "--queries", str(args.queries), "--dup-rate", str(args.dup_rate)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
        r = results[side]
        rate = args.queries / r["seconds"]
        print(f"{side:<10} {r['seconds']:7.2f} s  {rate:9.0f} queries/s  "
              f"peak {r['peak_mib']:6.0f} MiB  {r['found']} near duplicates")  # fmt: skip
    ours, base = results["pipeline"], results["datasketch"]
    print(f"queries/s ratio (pipeline / datasketch): {base['seconds'] / ours['seconds']:.1f}x")
    print(f"peak memory ratio (pipeline / datasketch): {ours['peak_mib'] / base['peak_mib']:.2f}")
    print(f"planted near duplicates: about {args.dup_rate:.0%} of {args.queries}")


if __name__ == "__main__":
    main()
