"""The same job with the local and the Ray executor, here: wall time and peak memory as
ratios (ray / local), and whether the two datasets are equal.

Each run is `embsynth run` in a fresh process; the Ray run starts its own local Ray
instance (what `executor: ray` without an address does) with `--engines` engine actors of
one CPU each. Peak memory is the highest sum, over the run's process tree (driver, Ray's
services, engine actors), of each process's proportional set size (PSS: shared pages split
between the processes sharing them), sampled every half second.

    python bench/ray_executor.py [--config configs/demo.yaml] [--limit 64] [--batch 16]
                                 [--engines 2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import yaml

from pipeline.config.job import load_config
from pipeline.generation.backends.engine_settings import CPUINFO, choose_settings, read_cpuinfo

ROOT = Path(__file__).resolve().parent.parent
EMBSYNTH = Path(sys.executable).with_name("embsynth")


def cpu_family_model() -> str:
    """`family F model M` of the first CPU (the model name alone can be just "AMD EPYC")."""
    fields: dict[str, str] = {}
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"


def job_file(config: Path, folder: Path, batch: int, ray: dict[str, Any] | None) -> Path:
    """The config with absolute paths, its output in `folder`, the given batch size, and
    `executor: ray` when `ray` settings are given."""
    job = load_config(config).model_dump(mode="json", exclude_defaults=True)
    job["input"]["batch_size"] = batch
    job["output"] = {**job.get("output", {}), "dir": str(folder / "out")}
    if ray is not None:
        job |= {"executor": "ray", "ray": ray}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    return path


def tree_pss(root: psutil.Process) -> int:
    """Bytes of the process and its descendants (PSS, or RSS where PSS is unreadable)."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measured_run(job: Path, limit: int) -> tuple[float, int, Path]:
    """(wall seconds, peak bytes, version folder) of one `embsynth run`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    start = time.perf_counter()
    command = [str(EMBSYNTH), "run", str(job), "--limit", str(limit)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root, peak = psutil.Process(process.pid), [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_pss(root))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"embsynth run failed:\n{output.decode(errors='replace')[-3000:]}")
    versions = sorted((job.parent / "out").glob("*/v*"))
    return seconds, peak[0], versions[-1]


def pairs(version: Path) -> dict[str, dict[str, Any]]:
    table = pq.read_table(sorted((version / "data").glob("*.parquet")))
    return {row["pair_id"]: row for row in table.to_pylist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument("--limit", type=int, default=64, help="documents")
    parser.add_argument("--batch", type=int, default=16, help="documents per batch (both)")
    parser.add_argument("--engines", type=int, default=2, help="engine actors of the Ray run")
    args = parser.parse_args()
    _, flags = read_cpuinfo()
    wide = sorted(f for f in flags if f.startswith(("avx512", "amx"))) or ["no AVX-512"]
    print(
        f"machine: {choose_settings({}).describe()}, {psutil.cpu_count()} cores, "
        f"{cpu_family_model()}, {' '.join(wide)}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        results = {}
        for name, ray in (("local", None), ("ray", {"engines": args.engines})):
            folder = Path(tmp) / name
            folder.mkdir()
            job = job_file(args.config, folder, args.batch, ray)
            results[name] = measured_run(job, args.limit)
            seconds, peak, _ = results[name]
            print(f"{name:>5}: {seconds:7.1f} s wall, peak {peak / 2**30:5.2f} GiB")
        (local_s, local_peak, local_v), (ray_s, ray_peak, ray_v) = results["local"], results["ray"]
        same = pairs(local_v) == pairs(ray_v)
        timings = json.loads((ray_v / "manifest.json").read_text(encoding="utf-8"))["timings"]
        driver = {k: timings.get(f"{k}_seconds", 0.0) for k in ("plan", "dedup", "write")}
        print(
            "ray driver's own steps: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in driver.items())
            + f" of {ray_s:.0f} s wall"
        )
        print(
            f"ratio ray/local: wall {ray_s / local_s:.2f}, peak memory {ray_peak / local_peak:.2f}"
            f" ({args.limit} documents, batches of {args.batch}, {args.engines} engine actors);"
            f" datasets equal: {same} ({len(pairs(local_v))} pairs)"
        )


if __name__ == "__main__":
    main()
