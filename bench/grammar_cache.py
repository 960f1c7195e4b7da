"""Does xgrammar's compiler stop growing? The config stage's schema names each document's
candidate personas, so nearly every document compiles a grammar of its own; this compiles
N such schemas through a `GrammarCompiler` built as vLLM 0.32 builds it (the Qwen3
tokenizer, 8 threads, the job's `VLLM_XGRAMMAR_CACHE_MB`, 32 by default) and prints the
process's RSS (after glibc's `malloc_trim`, as the job does after each batch) and the
compiler's cache every 1,000 grammars, then `late growth ratio R`: MiB per 1,000 grammars
over the last half against those from 1,000 to 2,000 (a cache that filled grows no more).

    python bench/grammar_cache.py [--grammars 10000] [--cache-mb 32]
"""

import argparse
import ctypes
import json
import os
import random
import sys
from importlib.metadata import version
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.generation.backends.engine_settings import GRAMMAR_CACHE_MB, read_cpuinfo  # noqa: E402
from pipeline.models.qwen_tokenizer import build_qwen3_tokenizer  # noqa: E402
from pipeline.models.tiny_qwen3 import QWEN3_VOCAB_SIZE  # noqa: E402

PERSONAS = ROOT / "prompts" / "personas.jsonl"
CANDIDATES = 3  # personas named per schema, as the retrieval family's default plans


def schema(personas: list[str]) -> str:
    """The retrieval family's config-stage schema with `personas` as the character enum."""
    return json.dumps({
        "type": "object",
        "properties": {
            "character": {"type": "string", "enum": personas},
            "question_type": {"type": "string", "enum": ["keywords", "acquire_knowledge",
                              "summary", "yes_or_no", "background"]},
            "difficulty": {"type": "string", "enum": ["high_school", "university", "phd"]},
        },
        "required": ["character", "question_type", "difficulty"],
        "additionalProperties": False,
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grammars", type=int, default=10_000)
    parser.add_argument("--cache-mb", type=int, default=GRAMMAR_CACHE_MB)
    args = parser.parse_args()
    if args.grammars < 4000:
        raise SystemExit(
            "--grammars: at least 4,000 (the ratio compares 1,000-2,000 with the last half)"
        )
    import xgrammar as xgr  # after the arguments: importing it takes a second

    name, _ = read_cpuinfo()
    print(f"machine: {name}, {os.cpu_count()} cores, xgrammar {version('xgrammar')}")
    info = xgr.TokenizerInfo.from_huggingface(build_qwen3_tokenizer(), vocab_size=QWEN3_VOCAB_SIZE)
    compiler = xgr.GrammarCompiler(info, max_threads=8, cache_enabled=True,
                                   cache_limit_bytes=args.cache_mb * 2**20)  # fmt: skip
    lines = PERSONAS.read_text(encoding="utf-8").splitlines()
    personas = [json.loads(line)["persona"] for line in lines]
    rng, libc, process = random.Random(0), ctypes.CDLL("libc.so.6"), psutil.Process()
    rss = {}
    for n in range(1, args.grammars + 1):
        grammar = compiler.compile_json_schema(schema(rng.sample(personas, CANDIDATES)),
                                               any_whitespace=False)  # fmt: skip
        xgr.GrammarMatcher(grammar)  # as each request's matcher is made, then dropped
        if n % 1000 == 0:
            libc.malloc_trim(0)
            rss[n] = process.memory_info().rss / 2**20
            print(f"{n} grammars: RSS {rss[n]:.0f} MiB, compiler cache "
                  f"{compiler.get_cache_size_bytes() / 2**20:.1f} MiB", flush=True)  # fmt: skip
    marks = sorted(rss)
    early = rss[2000] - rss[1000]
    half = marks[len(marks) // 2]
    late = (rss[marks[-1]] - rss[half]) / ((marks[-1] - half) / 1000)
    print(f"MiB per 1,000 grammars: {early:.1f} from 1,000 to 2,000, {late:.1f} over the last half")
    print(f"late growth ratio {late / early:.2f}")


if __name__ == "__main__":
    main()
