"""Pipeline overhead over raw vLLM: the same rendered prompts through `embsynth run`'s job
runner and through raw `LLM.chat`, on one engine in one process.

A first, untimed pipeline run records the exact requests it sends (both stages) and warms
the grammar cache; the raw run replays them with hand-built SamplingParams. The prefix
cache is reset before every timed run, the order alternates each round, and the best of
each side is compared. Throughput is
generated tokens per second (sampling makes lengths differ slightly between runs).

It prints the engine settings it ran with (dtype, threads, CPU), then replays the same
requests raw in a fresh process per dtype (float32, bfloat16), since the right dtype
depends on whether the CPU computes bf16 natively.

    python bench/generation_overhead.py [--docs 128] [--model PATH] [--corpus PATH] [--rounds 2]
"""

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"

import yaml

from pipeline.config.generator import StageSampling
from pipeline.config.job import load_config
from pipeline.generation.backends.base import OnDone, Request, Result
from pipeline.generation.backends.vllm_offline import open_generator
from pipeline.models.tiny_qwen3 import build_tiny_qwen3
from pipeline.run.job import run_job

ROOT = Path(__file__).resolve().parent.parent
ENGINE = {"enforce_eager": True, "max_model_len": 2048}


class Recorder:
    """Passes requests to the real generator and keeps a copy to replay raw."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.settings = inner.settings
        self.calls: list[tuple[list[Request], StageSampling]] = []

    def generate(
        self, requests: list[Request], sampling: StageSampling, on_done: OnDone | None = None
    ) -> list[Result]:
        self.calls.append((requests, sampling))
        return self.inner.generate(requests, sampling, on_done)


def raw_replay(llm: Any, calls: list[tuple[list[Request], StageSampling]]) -> tuple[float, int]:
    """Send the recorded requests straight to LLM.chat; return (seconds, generated tokens)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    start, tokens = time.perf_counter(), 0
    for requests, s in calls:
        params = [
            SamplingParams(
                temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_tokens,
                structured_outputs=StructuredOutputsParams(json=r.schema),
            )
            for r in requests
        ]  # fmt: skip
        outputs = llm.chat(
            [r.messages for r in requests], sampling_params=params, use_tqdm=False,
            chat_template_kwargs={"enable_thinking": False},
        )  # fmt: skip
        tokens += sum(len(o.outputs[0].token_ids) for o in outputs)
    return time.perf_counter() - start, tokens


def replay_with_dtype(model: str, dtype: str, calls_file: Path) -> None:
    """Child process: a fresh engine in `dtype` replays the recorded requests raw."""
    from vllm import LLM

    from pipeline.generation.backends.vllm_offline import STRUCTURED_OUTPUTS

    calls = pickle.loads(calls_file.read_bytes())
    llm = LLM(
        model=model, seed=1, dtype=dtype, structured_outputs_config=STRUCTURED_OUTPUTS, **ENGINE
    )
    raw_replay(llm, calls[:1])  # warm the grammar cache
    llm.reset_prefix_cache()
    seconds, tokens = raw_replay(llm, calls)
    print(f"DTYPE {dtype} {seconds:.2f} {tokens}")


def compare_dtypes(
    model: str, calls: list[tuple[list[Request], StageSampling]], work: Path
) -> None:
    """float32 vs bfloat16 on the same raw requests, each in its own process."""
    calls_file = work / "calls.pkl"
    calls_file.write_bytes(pickle.dumps(calls))
    seconds = {}
    for dtype in ("float32", "bfloat16"):
        child = [sys.executable, __file__, "--replay-dtype", dtype, "--model", model]
        out = subprocess.run(
            [*child, "--calls", str(calls_file)], capture_output=True, text=True, check=True
        ).stdout
        line = next(x for x in out.splitlines() if x.startswith("DTYPE "))
        _, _, secs, tokens = line.split()
        seconds[dtype] = float(secs)
        print(f"raw LLM.chat in {dtype}: {float(secs):.1f} s, {tokens} tok")
    ratio = seconds["bfloat16"] / seconds["float32"]
    print(f"bfloat16/float32 time ratio: {ratio:.2f} ({'bf16' if ratio < 1 else 'float32'} faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Qwen3)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "pipeline/data/sample_corpus.jsonl")
    parser.add_argument("--replay-dtype", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay_dtype:
        replay_with_dtype(str(args.model), args.replay_dtype, args.calls)
        return

    work = Path(tempfile.mkdtemp(prefix="embsynth-bench-"))
    model = args.model or build_tiny_qwen3(work / "tiny-qwen3")
    job = {
        "name": "bench", "seed": 1,
        "input": {"path": str(args.corpus.resolve()), "batch_size": args.docs},
        "languages": {"query": ["en", "de", "fr", "es"]},
        "generator": {"model": str(model), "engine": ENGINE},
        "output": {"dir": str(work / "out")},
    }  # fmt: skip
    (work / "job.yaml").write_text(yaml.safe_dump(job))
    config = load_config(work / "job.yaml")
    engine = open_generator(config.generator, config.seed)
    # Untimed first run: records the requests and warms vLLM's grammar cache for both sides.
    recorder = Recorder(engine)
    run_job(config, generator=recorder, limit=args.docs, progress=False)

    best_pipe, best_raw = 0.0, 0.0
    for round_ in range(1, args.rounds + 1):
        order = ["pipeline", "raw"] if round_ % 2 else ["raw", "pipeline"]
        for side in order:
            engine.llm.reset_prefix_cache()
            if side == "pipeline":
                summary = run_job(config, generator=engine, limit=args.docs, progress=False)
                pipe = summary.tokens.completion / summary.seconds
            else:
                raw_seconds, raw_tokens = raw_replay(engine.llm, recorder.calls)
                raw = raw_tokens / raw_seconds
        print(
            f"round {round_} ({' then '.join(order)}): pipeline {summary.seconds:.1f} s, "
            f"{summary.tokens.completion} tok, {pipe:.0f} tok/s ({summary.kept} kept) | "
            f"raw LLM.chat {raw_seconds:.1f} s, {raw_tokens} tok, {raw:.0f} tok/s"
        )
        stage_seconds = {k: round(v, 2) for k, v in summary.stage_seconds.items()}
        print("  pipeline stage seconds:", stage_seconds)
        best_pipe, best_raw = max(best_pipe, pipe), max(best_raw, raw)
    print(f"model: {model}  docs: {args.docs}")
    print(f"engine: {engine.settings.describe()}")
    print(f"pipeline/raw throughput ratio: {best_pipe / best_raw:.3f}")
    compare_dtypes(str(model), recorder.calls, work)


if __name__ == "__main__":
    main()
