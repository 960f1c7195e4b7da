"""The server backend against the in-process engine on the same prompts.

Renders the demo job's stage-1 and stage-2 style requests for the first N documents (the
real templates, personas drawn at random so no embedder runs), then generates them (a) with
the in-process engine and (b) through a vLLM server this script launches on 127.0.0.1 via
the job's own managed-server code, talking to it with the job's OpenAI backend. Same model,
engine options, sampling; each side in its own process (the server is a separate process
anyway), sides alternating over rounds, best of each. Prints generated tokens per second
and the ratio server / in-process.

    python bench/server_throughput.py [--docs 64] [--model .cache/models/smollm2-135m-instruct]
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"

from pipeline.config.job import (
    GeneratorConfig,
    PersonasConfig,
    ServerConfig,
    StageSampling,
    load_config,
)
from pipeline.corpus.reader import read_batches
from pipeline.generation.backends.base import Request
from pipeline.generation.planner import plan
from pipeline.generation.stages import enum_values, variables
from pipeline.personas.library import load_personas
from pipeline.prompts.library import PromptLibrary, schema_for

ROOT = Path(__file__).resolve().parent.parent
ENGINE = {"enforce_eager": True, "max_model_len": 2048}
SAMPLING = StageSampling(temperature=0.7, top_k=20, max_tokens=64)


def requests_for(docs: int) -> list[Request]:
    """Stage-1 requests of the demo job's retrieval family for the first `docs` documents."""
    config = load_config(ROOT / "configs" / "demo.yaml")
    config.tasks = [t for t in config.tasks if t.type == "retrieval"]
    config.personas = PersonasConfig(select="random")
    library = PromptLibrary(None, load_personas(config.personas))
    documents = [d for batch, _ in read_batches(config.input, docs) for d in batch]
    stage = library.task("retrieval").stages[0]
    return [
        Request(library.render(stage, variables(c, library)), schema_for(stage, enum_values(c)))
        for c in plan(documents, config, library)
    ]


def side(kind: str, model: str, requests_file: Path, port: int) -> dict[str, float]:
    """One timed generation in this process; returns seconds and generated tokens."""
    requests = pickle.loads(requests_file.read_bytes())
    if kind == "engine":
        from pipeline.generation.backends.vllm_offline import open_generator

        generator = open_generator(GeneratorConfig(model=model, engine=ENGINE), 0)
        generator.generate(requests[:4], SAMPLING)  # warm-up (grammar compile)
        start = time.perf_counter()
        results = generator.generate(requests, SAMPLING)
        seconds = time.perf_counter() - start
    else:
        from pipeline.generation.backends.openai_server import OpenAIServerGenerator
        from pipeline.generation.backends.server_process import launched_server

        server = ServerConfig(port=port, launch=True, base_url=f"http://127.0.0.1:{port}/v1",
                              concurrency=256)  # fmt: skip
        config = GeneratorConfig(backend="openai", model=model, engine=ENGINE, server=server)
        log = Path(tempfile.mkdtemp()) / "server.log"
        with launched_server(config, 0, log):
            generator = OpenAIServerGenerator(model, server)
            generator.generate(requests[:4], SAMPLING)
            start = time.perf_counter()
            results = generator.generate(requests, SAMPLING)
            seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in results)
    return {
        "seconds": seconds,
        "tokens": tokens,
        "failed": sum(r.error is not None for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--model", default=str(ROOT / ".cache/models/smollm2-135m-instruct"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.model, args.requests, args.port)))
        return
    requests_file = Path(tempfile.mkdtemp()) / "requests.pkl"
    requests_file.write_bytes(pickle.dumps(requests_for(args.docs)))
    best: dict[str, float] = {}
    for round_ in range(args.rounds):
        order = ["engine", "server"] if round_ % 2 == 0 else ["server", "engine"]
        for kind in order:
            out = subprocess.run(
                [sys.executable, __file__, "--side", kind, "--model", args.model,
                 "--requests", str(requests_file), "--port", str(args.port)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            result = json.loads(out)
            rate = result["tokens"] / result["seconds"]
            seconds, failed = result["seconds"], result["failed"]
            print(f"round {round_ + 1} {kind:>6}: {result['tokens']} tokens in "
                  f"{seconds:.1f} s = {rate:.0f} tok/s ({failed} failed)")  # fmt: skip
            best[kind] = max(best.get(kind, 0.0), rate)
    print(f"best: engine {best['engine']:.0f} tok/s, server {best['server']:.0f} tok/s, "
          f"server/engine = {best['server'] / best['engine']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
