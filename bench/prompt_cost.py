"""Computed prompt tokens per kept pair: today's prompt layout against the cache-aware one,
on the demo job and on the Cranfield job, from one run of this script.

`old` is every stage a request of its own with vLLM's CPU block size of 128 tokens and one
answer per plan (`prompt_layout: separate`, `engine.block_size: 128`, `samples: 1`);
`blocks` the same with 32-token blocks, so a shared prefix is cached to within 32 tokens;
`new` is the bundled job as it is: 32-token blocks and 3 answers per plan at its family's
last stage (`samples: 3`: one computed prompt, the first answer that passes every filter
kept); `shared` adds `prompt_layout: shared` (a multi-stage family's requests all open
with one head and the passage, so a later stage computes only its own tail). Each (job,
layout) runs in a fresh process with a fresh engine (nothing cached from another run), on
the first documents of each corpus. It prints, per run, the kept pairs and their share of
the plans, the prompt tokens the engine computed (prompt minus prefix-cache hits) per stage
and per kept pair, and the ratio new / old per job, with the machine's CPU.

    python bench/prompt_cost.py [--demo-docs 48] [--cranfield-docs 24] [--out DIR]
        [--layouts old,new[,blocks,shared]] [--jobs demo,cranfield]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"demo": ROOT / "configs" / "demo.yaml", "cranfield": ROOT / "configs" / "cranfield.yaml"}
LAYOUTS: dict[str, dict[str, Any]] = {  # None: as the bundled job has it
    "old": {"prompt_layout": "separate", "block_size": 128, "samples": 1},
    "blocks": {"prompt_layout": "separate", "block_size": None, "samples": 1},
    "new": {"prompt_layout": "separate", "block_size": None, "samples": None},
    "shared": {"prompt_layout": "shared", "block_size": None, "samples": None},
}


def one(job: str, layout: str, docs: int, out: Path) -> dict[str, Any]:
    """Run one job with one layout in this process; return its token and funnel figures."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from pipeline.config.job import load_config
    from pipeline.run.job import run_job

    config = load_config(JOBS[job])
    config.prompt_layout = LAYOUTS[layout]["prompt_layout"]
    if LAYOUTS[layout]["block_size"] is not None:
        config.generator.engine["block_size"] = LAYOUTS[layout]["block_size"]
    for task in config.tasks:
        task.samples = LAYOUTS[layout]["samples"] or task.samples
    config.output.dir = out
    summary = run_job(config, limit=docs, progress=False, quiet_engine=True)
    manifest = json.loads((summary.version_dir / "manifest.json").read_text())
    plans = next(s["in"] for s in manifest["funnel"] if s["step"] not in ("read", "doc_dedup"))
    return {
        "job": job, "layout": layout, "documents": summary.documents, "plans": plans,
        "kept": summary.kept, "prompt": summary.tokens.prompt, "cached": summary.tokens.cached,
        "stages": summary.tokens.stages, "seconds": round(summary.generate_seconds, 1),
        "engine": manifest["engine"],
    }  # fmt: skip


def per_pair(row: dict[str, Any]) -> float:
    return (row["prompt"] - row["cached"]) / row["kept"] if row["kept"] else float("nan")


def report(rows: list[dict[str, Any]]) -> str:
    header = f"{'job':<10}{'layout':<7}{'plans':>6}{'kept':>6}{'share':>7}{'prompt':>9}"
    lines = [header + f"{'computed':>10}{'per pair':>10}{'gen s':>8}  computed/request by stage"]
    for row in rows:
        stages = ", ".join(
            f"{name} {(c['prompt'] - c['cached']) / c['requests']:.0f}"
            for name, c in row["stages"].items()
        )
        computed = row["prompt"] - row["cached"]
        lines.append(
            f"{row['job']:<10}{row['layout']:<7}{row['plans']:>6}{row['kept']:>6}"
            f"{row['kept'] / row['plans']:>7.2f}{row['prompt']:>9}"
            f"{computed:>10}{per_pair(row):>10.1f}{row['seconds']:>8.0f}  {stages}"
        )
    for job in JOBS:
        runs = {r["layout"]: r for r in rows if r["job"] == job}
        for layout in [name for name in LAYOUTS if name != "old" and name in runs]:
            if "old" not in runs:
                continue
            old, new = per_pair(runs["old"]), per_pair(runs[layout])
            computed = [runs[k]["prompt"] - runs[k]["cached"] for k in ("old", layout)]
            lines.append(
                f"{job}: ratio {layout}/old computed prompt tokens per kept pair "
                f"{new / old:.2f} ({old:.0f} -> {new:.0f}); per plan "
                f"{computed[1] / computed[0]:.2f}; kept share "
                f"{runs['old']['kept'] / runs['old']['plans']:.2f} -> "
                f"{runs[layout]['kept'] / runs[layout]['plans']:.2f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-docs", type=int, default=48)
    parser.add_argument("--cranfield-docs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--layouts", default="old,new", help="old,new,shared")
    parser.add_argument("--jobs", default=",".join(JOBS), help="demo,cranfield")
    parser.add_argument("--one", nargs=2, metavar=("JOB", "LAYOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="prompt-cost-"))
    docs = {"demo": args.demo_docs, "cranfield": args.cranfield_docs}
    if args.one:
        job, layout = args.one
        print(json.dumps(one(job, layout, docs[job], out / f"{job}-{layout}")))
        return
    from pipeline.generation.backends.engine_settings import choose_settings

    print(f"machine: {choose_settings({}).describe()}")
    rows = []
    for job in args.jobs.split(","):
        for layout in args.layouts.split(","):
            done = subprocess.run(
                [sys.executable, __file__, "--one", job, layout, "--out", str(out),
                 "--demo-docs", str(args.demo_docs), "--cranfield-docs", str(args.cranfield_docs)],
                capture_output=True, text=True, cwd=ROOT, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                sys.exit(f"{job} {layout} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(report(rows[-1:]).splitlines()[-1], flush=True)
    print(report(rows))
    (out / "prompt_cost.json").write_text(json.dumps(rows, indent=2))
    print(f"results: {out / 'prompt_cost.json'}")


if __name__ == "__main__":
    main()
