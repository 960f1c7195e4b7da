"""The training side as the corpus grows: the bundled NPL recipe (configs/train-npl.yaml:
margin-MSE on the fused teacher, the adapter stage, the validation split choosing the
final model) on the NPL pairs, once with NPL's own corpus as the adapter job's (11,429
abstracts) and once with about twice as many real documents: NPL's abstracts, Cranfield's
1,398 abstracts and each Cranfield abstract's sentences as documents of their own. The
adapter's lesson, the fused teacher and the split's ranking all work over the job's corpus,
so this is where training memory follows the corpus.

Each run is a fresh `embsynth train` process; the bench samples the PSS of its process tree
(as bench/scale.py) and prints the wall and the peak of each, then `peak memory ratio R`
(the larger corpus's peak against NPL's own) and the larger run's peak against 8 GiB.

    python bench/train_scale.py ../shared/data/eval --data out/npl/v0001 --work out/train-scale
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from scale import measured  # bench/scale.py, beside this one

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.generation.backends.engine_settings import read_cpuinfo  # noqa: E402

GOAL_GIB = 8


def grown_corpus(eval_data: Path, path: Path) -> int:
    """NPL's corpus, Cranfield's, and Cranfield's sentences as documents (ids prefixed, so
    NPL's ids, which the pairs name, stay as they are); returns the document count."""
    rows = [json.loads(line) for line in (eval_data / "npl" / "corpus.jsonl").open()]
    for line in (eval_data / "cranfield" / "corpus.jsonl").open():
        doc = json.loads(line)
        rows.append({"_id": f"cranfield-{doc['_id']}", "text": doc["text"]})
        parts = [s.strip() for s in doc["text"].split(" . ") if len(s.split()) >= 5]
        rows += [{"_id": f"cranfield-{doc['_id']}-{n}", "text": s} for n, s in enumerate(parts)]
    with path.open("w") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    return len(rows)


def configs(work: Path, corpus: Path, data: Path, name: str) -> Path:
    """The NPL job with `corpus` as its input and the NPL training recipe with that job as
    its adapter job, written to `work`; returns the training config."""
    job: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "npl.yaml").read_text())
    job["input"]["path"] = str(corpus.resolve())
    job["generator"]["model"] = str(ROOT / ".cache" / "models" / "smollm2-135m-instruct")
    job["output"]["dir"] = str((work / "out").resolve())
    (work / f"{name}.yaml").write_text(yaml.safe_dump(job))
    train: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "train-npl.yaml").read_text())
    train["model"] = str((ROOT / "configs" / train["model"]).resolve())
    train["data"] = [str(data.resolve())]
    train["output_dir"] = str((work / f"train-{name}").resolve())
    train["adapter"]["job"] = str((work / f"{name}.yaml").resolve())
    path = work / f"train-{name}.yaml"
    path.write_text(yaml.safe_dump(train))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_data", type=Path, help="the folder holding npl/ and cranfield/")
    parser.add_argument("--data", type=Path, required=True, help="the NPL job's version")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    name, flags = read_cpuinfo()
    wide = " ".join(sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}))
    print(f"machine: {name}, {os.cpu_count()} cores, {wide}", flush=True)
    grown = args.work / "grown-corpus.jsonl"
    npl = args.eval_data / "npl" / "corpus.jsonl"
    runs = {
        "npl": (npl, sum(1 for _ in npl.open())),
        "grown": (grown, grown_corpus(args.eval_data, grown)),
    }
    peaks = {}
    for label, (corpus, documents) in runs.items():
        config = configs(args.work, corpus, args.data, label)
        command = [sys.executable, "-m", "pipeline.cli.app", "train", str(config)]
        wall, peak, _, _ = measured(command, args.work / f"train-{label}.log")
        peaks[label] = peak
        print(f"{label}: {documents:,} documents, {wall / 60:.1f} min, "
              f"peak PSS {peak / 2**30:.2f} GiB", flush=True)  # fmt: skip
    print(f"peak memory ratio {peaks['grown'] / peaks['npl']:.2f}")
    grown_gib = peaks["grown"] / 2**30
    print(f"peak at {runs['grown'][1]:,} documents: {grown_gib:.2f} GiB (goal: under {GOAL_GIB})")


if __name__ == "__main__":
    main()
