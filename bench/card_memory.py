"""Peak memory of the card step (card_rows + mix_report + write_card) for a version of 10k
pairs and one of 1M: the card reads columns shard by shard, so the 1M version should cost
little more than the 10k one (goal: ratio at most 1.5).

Each synthetic version has realistic texts (a ~1,000-character positive and three
~1,000-character negatives per pair, 8-word queries) and a third as many rejects, written
shard by shard (10,000 rows, the default shard size) so the bench itself stays bounded.
Each measurement runs in a fresh child process that reports its own peak RSS (VmHWM). The old
approach (every card column of every pair loaded as Python rows, what the card did before)
is measured at 10k and 100k pairs as the baseline.

    python bench/card_memory.py [--sizes 10000 1000000] [--old-sizes 10000 100000]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.dataset.records import PAIR_SCHEMA, REJECT_SCHEMA  # noqa: E402

SHARD = 10_000
VOCABULARY = """river mountain bread chess guitar python vaccine battery solar engine recipe
garden tax loan insurance laptop phone camera bike train flight hotel visa passport museum
history physics chemistry biology protein enzyme photosynthesis climate ocean storm pressure
wing airfoil boundary layer flow shock heat transfer velocity measured the of and in to a is
for with on by from at as an that this was were which be are"""
WORDS = np.array(VOCABULARY.split())


def passages(rng: np.random.Generator, count: int, words: int) -> pa.Array:
    """`count` texts of `words` random words (about 6.5 characters a word)."""
    picked = WORDS[rng.integers(0, len(WORDS), size=(count, words))]
    return pa.array([" ".join(row) for row in picked])


def shard(rng: np.random.Generator, start: int, rows: int, pool: pa.Array) -> pa.Table:
    """Pairs start..start+rows: each text a pool passage behind a prefix of its own, so no
    two rows share a text (as in a real version)."""
    ids = pa.array([str(i) for i in range(start, start + rows)])

    def texts(tag: str) -> pa.Array:
        chosen = pool.take(pa.array(rng.integers(0, len(pool), rows)))
        return pc.binary_join_element_wise(ids, pa.scalar(tag), chosen, "")

    negatives = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 3 * rows + 1, 3, dtype=np.int32)),
        pc.binary_join_element_wise(
            pc.binary_join_element_wise(
                pa.array(np.repeat(np.arange(start, start + rows), 3).astype(str)),
                pa.scalar(" n "),
                "",
            ),
            pool.take(pa.array(rng.integers(0, len(pool), 3 * rows))),
            "",
        ),
    )

    def choice(values: list[str | None]) -> pa.Array:
        return pa.array(values, pa.string()).take(pa.array(rng.integers(0, len(values), rows)))

    def scores(kind: pa.DataType, low: float, high: float) -> pa.Array:
        return pa.array(rng.uniform(low, high, rows)).cast(kind)

    columns = {
        "pair_id": ids,
        "query": passages(rng, rows, 8),
        "positive": texts(" p "),
        "negatives": negatives,
        "instruction": pa.array(["Given a query, retrieve relevant passages"] * rows),
        "task": choice(["retrieval", "retrieval", "sts", "bitext", "classification"]),
        "language": choice(["en", "en", "en", "de", "fr", "es"]),
        "doc_language": choice(["en"]),
        "persona": choice([f"persona {i}" for i in range(40)]),
        "question_type": choice(["keywords", "summary", "background", "yes_or_no"]),
        "difficulty": choice(["high_school", "university", "phd", None]),
        "clarity": choice(["clear", "ambiguous"]),
        "doc_id": ids,
        "model": pa.array(["bench"] * rows),
        "template_hash": pa.array(["h"] * rows),
        "sampling": pa.array(["{}"] * rows),
        "seed": pa.array(np.zeros(rows, np.int64)),
        "score_consistency": scores(pa.float32(), 0.3, 0.9),
        "score_round_trip_rank": pa.array(rng.integers(1, 20, rows).astype(np.int32)),
        "score_ngram_overlap": scores(pa.float32(), 0.0, 0.5),
        "negative_scores": pa.ListArray.from_arrays(
            pa.array(np.arange(0, 3 * rows + 1, 3, dtype=np.int32)),
            pa.array(rng.uniform(0.1, 0.8, 3 * rows).astype(np.float32)),
        ),
        "teacher_scores": pa.array([[]] * rows, pa.list_(pa.float32())),
    }
    return pa.table(
        [columns.get(f.name, pa.nulls(rows, f.type)) for f in PAIR_SCHEMA], schema=PAIR_SCHEMA
    )


def reject_shard(rng: np.random.Generator, start: int, rows: int, pool: pa.Array) -> pa.Table:
    """Rejects with a score (consistency, round trip) and a short raw generation."""
    kinds = [("consistency", "low_consistency"), ("round_trip", "round_trip_miss")]
    which = rng.integers(0, 2, rows)
    return pa.table(
        {
            "doc_id": pa.array([f"r{i}" for i in range(start, start + rows)]),
            "task": pa.array(["retrieval"] * rows),
            "stage": pa.array([kinds[k][0] for k in which]),
            "reason": pa.array([kinds[k][1] for k in which]),
            "detail": pa.array(["below threshold"] * rows),
            "raw": pool.take(pa.array(rng.integers(0, len(pool), rows))),
            "score": pa.array(rng.uniform(0.0, 0.3, rows)),
        },
        schema=REJECT_SCHEMA,
    )


def write_synthetic(folder: Path, pairs: int) -> Path:
    """A version folder of `pairs` pairs and pairs // 3 rejects, one shard at a time."""
    rng = np.random.default_rng(0)
    pool = passages(rng, 4000, 150)  # ~1,000 characters each
    for name, rows, make in (("data", pairs, shard), ("rejects", pairs // 3, reject_shard)):
        (folder / name).mkdir(parents=True)
        for number, start in enumerate(range(0, rows, SHARD)):
            table = make(rng, start, min(SHARD, rows - start), pool)
            pq.write_table(table, folder / name / f"part-{number:05d}.parquet", compression="zstd")
    return folder


def child(version: Path, mode: str) -> dict[str, float]:
    """In the child: run the card step (`new`), the old approach's read (`old`) or nothing
    but the imports (`imports`); report peak RSS."""
    from pipeline.config.job import JobConfig
    from pipeline.dataset.card import SCORE_PLOTS, card_rows, write_card
    from pipeline.dataset.mix import MIX_COLUMNS, mix_report
    from pipeline.personas.library import load_personas
    from pipeline.prompts.library import PromptLibrary

    config = JobConfig(name="bench", input={"path": "corpus.jsonl"}, generator={"model": "m"})
    library = PromptLibrary(config.prompts_dir, load_personas(config.personas))
    start = time.perf_counter()
    if mode == "new":
        card = card_rows(version)
        manifest = {
            "name": "bench", "version": version.name, "model": "bench", "finished_at": "-",
            "config_hash": "-", "counts": {"kept": card.mix.rows, "read": {"documents": 0}},
            "mix": mix_report(config, library, card.mix),
        }  # fmt: skip
        write_card(version, manifest, card)
    elif mode == "old":  # what card_rows did before: every card column as Python rows
        columns = ["query", "positive", "negatives", "negative_scores", *MIX_COLUMNS]
        columns = list(dict.fromkeys([*columns, *SCORE_PLOTS]))
        rows = pq.read_table(version / "data", columns=columns).to_pylist()
        assert rows
    seconds = time.perf_counter() - start
    return {"peak_mib": peak_rss_mib(), "s": seconds}


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    the parent's peak over into an exec'd child's ru_maxrss (the bench parent, which wrote
    the versions, would set the floor of every measurement)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(version: Path, mode: str) -> dict[str, float]:
    """Run `child` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(version), mode],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 1_000_000])
    parser.add_argument("--old-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--dir", type=Path, default=None, help="where to write (else a temp)")
    parser.add_argument("--child", nargs=2, metavar=("VERSION", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return
    from pipeline.generation.backends.engine_settings import read_cpuinfo

    name, flags = read_cpuinfo()
    features = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16") if f in flags)
    print(f"cpu: {name} ({features})")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        sizes = sorted({*args.sizes, *args.old_sizes})
        versions = {}
        for size in sizes:
            start = time.perf_counter()
            versions[size] = write_synthetic(Path(tmp) / f"v{size}", size)
            data = sum(p.stat().st_size for p in (versions[size] / "data").iterdir())
            print(f"wrote {size:>9,} pairs ({data / 2**20:,.0f} MiB Parquet) "
                  f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
        base = measure(versions[sizes[0]], "imports")
        print(f"imports only (pyarrow, numpy, pipeline config and prompt library): "
              f"{base['peak_mib']:.0f} MiB")  # fmt: skip
        peaks = {}
        for size in args.sizes:
            result = measure(versions[size], "new")
            peaks[size] = result["peak_mib"]
            print(f"card step, {size:>9,} pairs: peak {result['peak_mib']:7.0f} MiB, "
                  f"{result['s']:.1f} s")  # fmt: skip
        small, large = args.sizes
        print(f"card peak memory ratio {peaks[large] / peaks[small]:.2f} "
              f"({large:,} / {small:,} pairs; goal <= 1.5)")  # fmt: skip
        old = {size: measure(versions[size], "old")["peak_mib"] for size in args.old_sizes}
        for size, peak in old.items():
            print(f"old approach (rows as Python objects), {size:>9,} pairs: peak {peak:7.0f} MiB")
        if len(old) == 2:
            (a, pa_), (b, pb) = sorted(old.items())
            print(f"old approach peak memory ratio {pb / pa_:.2f} ({b:,} / {a:,} pairs)")


if __name__ == "__main__":
    main()
