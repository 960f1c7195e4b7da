"""How a job's memory and time grow with its corpus: `embsynth run` on corpora of N documents
made from the bundled sample corpus, then a refresh after 1% new documents.

Each corpus is deterministic (seeded): every document is 5 to 10 sentences drawn from the
sample corpus's English passages, so texts are real prose, distinct, and about as long as
the sample's. The job is the retrieval family with every filter, dedup (exact, near,
semantic, documents), mining and the fused teacher (as the bundled Cranfield job: scale
rank, the round trip judged by the teacher) on, with the bundled all-MiniLM-L6-v2 as
embedder and the tiny random Qwen3 as generator, so the LLM does not hide the pipeline's own
cost. Its tokenizer keeps Qwen's first 8,192 BPE ranks (`--ranks`; 151,643 is the whole
vocabulary): with the whole vocabulary, vLLM's CPU sampler and the grammar's token masks
over 152k logits were 80% of a run's wall (about 4 documents a second), a cost a real
generator on a GPU does not have in that share. The filters' thresholds let the tiny
model's text through (language judged only when lingua is certain, any cosine, the round
trip within the whole corpus), so every later step sees every pair, as it would with a real
generator's good queries.

Each run is a fresh `embsynth run` process as a user starts it; the bench samples the PSS of
its process tree (the job and vLLM's engine process) every half second, or less often where a
sample costs more (see `measured`). Time per step comes
from the version's manifest (`timings`; "other" is what the steps leave of the job's total,
"start-up" the wall before it: imports, the engine, the corpus vectors). Prints, per N,
the wall per document, the peak PSS, the steps and the PSS over each tenth of the run
(where memory stops growing), then `peak memory ratio R` (largest N / smallest), `time per
document ratio R`, the same without the two LLM stages (`pipeline time per document ratio
R`: what the tiny model's generation does not hide) and `refresh share R` (the refresh's
wall / the largest full run's). This machine's pace varies up to 1.45x between runs, so each
run also samples a fixed probe's CPU time (`pace`), and the time ratio is printed again at
equal pace. Each size's figures are kept in WORK/N/result.json;
`--saved N` reads them instead of running N again, so sizes can be measured in separate
invocations (with the same generator and index).

    python bench/scale.py [--sizes 10000 100000] [--saved N ...] [--work DIR]
                          [--exact-below N] [--ranks N] [--resume]
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.dataset.manifest import write_json_atomic  # noqa: E402
from pipeline.dataset.writer import atomic_path  # noqa: E402
from pipeline.models.tiny_qwen3 import build_tiny_qwen3  # noqa: E402

SAMPLE = ROOT / "pipeline" / "data" / "sample_corpus.jsonl"
NEW_SHARE = 0.01  # the refresh's new documents, as a share of the corpus
GENERATION = ("config", "query")  # the retrieval family's LLM stages


def sentences() -> list[str]:
    """Every sentence of the sample corpus's English passages."""
    docs = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    found = []
    for doc in docs:
        if doc.get("language") == "en":
            found += [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc["text"]) if s.strip()]
    return found


def documents(count: int, seed: int = 0) -> Iterator[str]:
    """`count` texts, each 5-10 seeded sentences; more of the same seed start with the
    fewer's texts (the refresh's old documents)."""
    pool = np.array(sentences(), dtype=object)
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield " ".join(pool[rng.integers(0, len(pool), rng.integers(5, 11))])


def write_corpus(path: Path, count: int, seed: int = 0) -> None:
    """`documents` as a corpus file, ids s0000000.. in order; written whole or not at all
    (a temp file renamed over it), so a resumed measurement finds the corpus it began."""
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8") as out:
        for i, text in enumerate(documents(count, seed)):
            out.write(json.dumps({"id": f"s{i:07d}", "text": text}) + "\n")


def job(corpus: Path, out: Path, model: Path, embedder: dict[str, Any]) -> dict[str, Any]:
    """The measured job (see the module)."""
    return {
        "name": "scale",
        "seed": 1,
        "input": {"path": str(corpus), "batch_size": 512},
        "tasks": [{"type": "retrieval", "query_words": [3, 12]}],
        "languages": {"query": ["en"]},
        "generator": {"model": str(model), "engine": {"enforce_eager": True,
                                                      "max_model_len": 2048}},
        "filters": {
            "max_copy_ratio": 1.0,
            "length": {"tolerance": 10.0, "slack": 40},
            "language": {"min_confidence": 1.0},
            "heuristics": {"max_ngram_overlap": 1.0},
            "consistency": {"min_cosine": -1.0},
            "round_trip": {"judge": "teacher", "top_k": 10_000_000},
        },
        "teacher": {"kind": "fused", "scale": "rank"},
        "embedder": embedder,
        "output": {"dir": str(out), "shard_size": 10_000},
    }  # fmt: skip


def tree_pss(process: psutil.Process) -> tuple[int, int]:
    """PSS bytes of a process and of its descendants (vLLM's engine process; 0 for one that
    is gone). The job itself may be gone too: the watcher's last sample can come after the
    job exited and was reaped, when even listing its children fails."""

    def pss(p: psutil.Process) -> int:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            return p.memory_full_info().pss
        return 0

    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    return pss(process), sum(pss(child) for child in children)


PACE_WORK = np.random.default_rng(0).random(20_000)


def pace() -> float:
    """CPU milliseconds this thread takes for a fixed piece of work (a Python loop and a
    sort). This machine's pace varies up to 1.45x between runs of the same job (its host's
    other tenants: no steal time shows), so a run's time is read beside the pace it had:
    the median over the run, sampled every 10 s while the job keeps both cores busy."""
    start = time.thread_time()
    total = 0
    for i in range(50_000):
        total += i * i
    np.sort(PACE_WORK)
    return 1000 * (time.thread_time() - start)


SAMPLER_SHARE = 0.05  # the most of one core the PSS sampler takes from the job it measures
WINDOW = 10.0  # seconds a window of PSS samples spans (`tenths`)


def measured(command: list[str], log: Path, record: Callable[[dict[str, Any]], None]) -> None:
    """Run a command to its end, sampling the PSS of its process tree (the job's own
    process apart) and the machine's `pace` every 10 s, and `record` what this part of the
    run measured every minute and at its end: a run killed with its machine keeps the wall
    it had (see `stage`). PSS is sampled every half second, or less often: a sample reads
    smaps_rollup, which walks the job's page tables in the kernel (0.2 s at 11 GB
    resident), and every half second that took a third of a core and slowed a
    million-document run by a sixth (51-56 against 43-45 ms a document). So the sampler
    waits at least 1/SAMPLER_SHARE times what its last sample took. The engine's KV cache
    is 1 GiB, as `make` sets it: vLLM's default reserves more, and the pages a run has
    touched grow with it."""
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_CPU_KVCACHE_SPACE": "1"} | dict(os.environ)  # fmt: skip
    start = time.perf_counter()
    samples: list[tuple[float, int, int]] = []  # (seconds in, the tree, the job's process)
    paces: list[float] = []

    def part() -> dict[str, Any]:
        windows: dict[int, list[int]] = {}
        for at, tree, _ in samples:
            low, high = windows.get(key := int(at // WINDOW), (tree, tree))
            windows[key] = [min(low, tree), max(high, tree)]
        return {"wall": time.perf_counter() - start,
                "peak": max((tree for _, tree, _ in samples), default=0),
                "job": max((job for _, _, job in samples), default=0),
                "pace": float(np.median(paces)) if paces else None,
                "windows": [windows[w] for w in sorted(windows)]}  # fmt: skip

    with log.open("a") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        watched, done = psutil.Process(process.pid), threading.Event()

        def watch() -> None:
            paced = recorded = start
            while not done.is_set():
                began = time.perf_counter()
                job, engine = tree_pss(watched)
                took = time.perf_counter() - began
                samples.append((began - start, job + engine, job))
                if not paces or began - paced >= 10:
                    paces.append(pace())
                    paced = began
                if began - recorded >= 60:
                    record(part())
                    recorded = began
                done.wait(max(0.5, took / SAMPLER_SHARE))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            code = process.wait()
        finally:  # the bench stopped (Ctrl-C, SIGTERM): the job stops with it, resumable
            if process.poll() is None:
                process.terminate()
                process.wait()
            done.set()
            watcher.join()
            record(part())
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}: see {log}")


def tenths(windows: list[list[int]]) -> str:
    """The PSS over each tenth of a run, as its least and highest in GiB: the least is what
    the run holds between batches, so a flat tail says its memory stopped growing."""
    parts = [windows[len(windows) * i // 10 : len(windows) * (i + 1) // 10] for i in range(10)]
    return "  ".join(f"{min(w[0] for w in p) / 2**30:.2f}-{max(w[1] for w in p) / 2**30:.2f}"
                     for p in parts if p)  # fmt: skip


def run(config: dict[str, Any], folder: Path, name: str, command: str) -> dict[str, Any]:
    """One `embsynth run|refresh` of `config`, to its end: its wall, peak PSS and the
    manifest's steps. Each invocation is a part, kept in FOLDER/NAME.parts.json as it goes;
    a run killed part-way (`--resume`) is resumed by `embsynth run` itself (from its last
    checkpoint, pipeline.run.checkpoint), and its wall is the parts' sum."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    kept = folder / f"{name}.parts.json"
    earlier = json.loads(kept.read_text()) if kept.is_file() else []
    cli = [sys.executable, "-m", "pipeline.cli.app", command, str(path)]
    measured(cli, folder / f"{name}.log", lambda part: write_json_atomic([*earlier, part], kept))
    parts = json.loads(kept.read_text())
    wall = sum(p["wall"] for p in parts)
    versions = sorted((Path(config["output"]["dir"]) / "scale").glob("v[0-9]*"))
    manifest = json.loads((versions[-1] / "manifest.json").read_text())
    timings = {k.removesuffix("_seconds"): v for k, v in manifest["timings"].items()}
    total = timings.pop("total")
    timings["other"] = total - sum(timings.values())
    # Imports, the engine, the corpus vectors; over several parts (a run killed and resumed
    # from its checkpoints: the steps are every part's) also the work a kill lost.
    timings["start-up" if len(parts) == 1 else "start-ups and lost work"] = wall - total
    paced = [p for p in parts if p["pace"] is not None]
    pace_ms = sum(p["pace"] * p["wall"] for p in paced) / sum(p["wall"] for p in paced)
    return {"wall": wall, "peak": max(p["peak"] for p in parts),
            "job": max(p["job"] for p in parts), "parts": len(parts),
            "documents": manifest["counts"]["read"]["documents"],
            "kept": manifest["counts"]["kept"], "steps": timings,
            "tenths": tenths([w for p in parts for w in p["windows"]]),
            "pace": pace_ms}  # fmt: skip


def stage(config: dict[str, Any], folder: Path, name: str, command: str) -> dict[str, Any]:
    """`run`'s result, kept in FOLDER/NAME.json once the run ended: a resumed measurement
    does not run a finished stage again."""
    done = folder / f"{name}.json"
    if not done.is_file():
        write_json_atomic(run(config, folder, name, command), done)
    return json.loads(done.read_text())


def report(n: int, result: dict[str, Any]) -> None:
    steps = "  ".join(f"{k} {v:.0f} s" for k, v in sorted(result["steps"].items()))
    print(f"N={n}: {result['documents']} documents read, {result['kept']} pairs, "
          f"wall {result['wall']:.0f} s ({1000 * result['wall'] / n:.1f} ms/document), "
          f"peak PSS {result['peak'] / 2**30:.2f} GiB (the job's process "
          f"{result['job'] / 2**30:.2f} GiB)", flush=True)  # fmt: skip
    print(f"  steps: {steps}", flush=True)
    print(f"  PSS by tenth of the run (least-highest, GiB): {result['tenths']}", flush=True)
    if "pace" in result:  # results saved before 2026-12-06 have none
        print(f"  machine pace: {result['pace']:.2f} ms a probe (median)", flush=True)


def measure(
    n: int, work: Path, model: Path, embedder: dict[str, Any], resume: bool
) -> dict[str, Any]:
    """A fresh run on N documents (or, with `resume`, the one an earlier invocation left
    unfinished in WORK/N), then the refresh after 1% new ones; both are kept in
    WORK/N/result.json, so a size measured once (100,000 documents take hours here) can
    be set against one measured later with `--saved`."""
    folder = work / str(n)
    corpus = folder / "corpus.jsonl"
    if not (resume and corpus.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        write_corpus(corpus, n)
    config = job(corpus, folder / "out", model, embedder)
    result = stage(config, folder, "run", "run")
    report(n, result)
    write_corpus(corpus, int(n * (1 + NEW_SHARE)))
    refreshed = stage(config, folder, "refresh", "refresh")
    print(f"refresh of N={n} after {int(n * NEW_SHARE)} new documents: "
          f"{refreshed['documents']} read, wall {refreshed['wall']:.0f} s, "
          f"peak PSS {refreshed['peak'] / 2**30:.2f} GiB", flush=True)  # fmt: skip
    print(f"  steps: {'  '.join(f'{k} {v:.0f} s' for k, v in refreshed['steps'].items())}")
    kept = {"settings": {"generator": model.name, "embedder": embedder},
            "run": result, "refresh": refreshed}  # fmt: skip
    write_json_atomic(kept, folder / "result.json")  # read back by --saved: whole or absent
    return kept


def per_document(result: dict[str, Any]) -> float:
    return result["wall"] / result["documents"]


def own(result: dict[str, Any]) -> float:
    """Seconds a document without the two LLM stages: what the generator does not hide."""
    return (result["wall"] - sum(result["steps"][s] for s in GENERATION)) / result["documents"]


def saved(n: int, work: Path, model: Path, embedder: dict[str, Any]) -> dict[str, Any]:
    """A size's result from an earlier invocation with the same generator and index."""
    path = work / str(n) / "result.json"
    if not path.is_file():
        raise SystemExit(f"no saved result for N={n}: {path} (run it with --sizes {n})")
    kept = json.loads(path.read_text())
    if kept["settings"] != {"generator": model.name, "embedder": embedder}:
        raise SystemExit(f"{path} was measured with other settings: {kept['settings']}")
    report(n, kept["run"])
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument(
        "--saved", type=int, nargs="*", default=[], help="sizes read from WORK/N/result.json"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".scale")
    parser.add_argument(
        "--exact-below",
        type=int,
        default=100_000,
        help="embedder.exact_below: 0 runs every size as a large corpus runs",
    )
    parser.add_argument(
        "--embedder-backend",
        choices=["torch", "vllm"],
        default="torch",
        help="embedder.backend (vllm: bf16 through vLLM's pooling runner where the CPU has it)",
    )
    parser.add_argument(
        "--ranks", type=int, default=8192, help="the generator's BPE ranks (151643: all)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with WORK/N where an earlier invocation stopped (the parts' walls add up)",
    )
    args = parser.parse_args()
    args.work = args.work.resolve()  # the job files name paths from their own folder
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / f"tiny-qwen3-{args.ranks}"
    if not (model / "config.json").is_file():
        build_tiny_qwen3(model, seed=0, ranks=args.ranks)
    embedder = {"exact_below": args.exact_below, "backend": args.embedder_backend}
    results = {n: saved(n, args.work, model, embedder) for n in args.saved}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the job too (measured)
    for n in sorted(args.sizes):
        results[n] = measure(n, args.work, model, embedder, args.resume)
    small, large = results[min(results)]["run"], results[max(results)]["run"]
    print(f"peak memory ratio {large['peak'] / small['peak']:.2f}")
    print(f"the job's process: peak memory ratio {large['job'] / small['job']:.2f}")
    print(f"time per document ratio {per_document(large) / per_document(small):.2f}")
    print(f"pipeline time per document ratio {own(large) / own(small):.2f}")
    if "pace" in small and "pace" in large:
        slower = large["pace"] / small["pace"]
        print(f"the machine's pace ratio {slower:.2f}: at equal pace, time per document "
              f"ratio {per_document(large) / per_document(small) / slower:.2f}")  # fmt: skip
    print(f"refresh share {results[max(results)]['refresh']['wall'] / large['wall']:.3f}")


if __name__ == "__main__":
    main()
