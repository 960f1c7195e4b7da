"""Pipeline overhead over raw vLLM: the same rendered prompts through `embsynth run`'s job
runner and through raw `LLM.chat`, on one engine in one process.

A first, untimed pipeline run records the exact requests it sends (both stages) and warms
the grammar cache; the raw run replays them with hand-built SamplingParams. The prefix
cache is reset before every timed run, the order alternates each round, and the best of
each side is compared. Throughput is
generated tokens per second (sampling makes lengths differ slightly between runs).

    python bench/generation_overhead.py [--docs 128] [--model PATH] [--corpus PATH] [--rounds 2]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"

import yaml

from pipeline.config import StageSampling, load_config
from pipeline.generate.backend import Request, Result
from pipeline.generate.vllm_offline import open_generator
from pipeline.models.tiny_qwen3 import build_tiny_qwen3
from pipeline.run import run_job

ROOT = Path(__file__).resolve().parent.parent
ENGINE = {"enforce_eager": True, "max_model_len": 2048}


class Recorder:
    """Passes requests to the real generator and keeps a copy to replay raw."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.calls: list[tuple[list[Request], StageSampling]] = []

    def generate(self, requests: list[Request], sampling: StageSampling) -> list[Result]:
        self.calls.append((requests, sampling))
        return self.inner.generate(requests, sampling)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Qwen3)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "pipeline/data/sample_corpus.jsonl")
    args = parser.parse_args()

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
    print(f"pipeline/raw throughput ratio: {best_pipe / best_raw:.3f}")


if __name__ == "__main__":
    main()
