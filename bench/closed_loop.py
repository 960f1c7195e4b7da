"""The closed loop: generate from a BEIR collection's corpus, build ablation variants of the
same generations, train each, evaluate each on the collection's real queries.

Generation runs once: every variant runs the job through one request cache in WORK/cache
(the same cache that makes `embsynth run` resumable), so the first variant generates, the
others are answered from the cache without loading the model, and variants differ only in
their filter, dedup and mining settings. Each
variant is trained with the same training config and seed at one epoch and, so that
quality is not confounded with quantity, at the same number of steps (smaller sets repeat
epochs). Zero-shot is the first row. Where the corpus has titles, a reference row trains on
(title, text) pairs of the same documents: specific, on-topic queries by construction, which
tells a generator's limits apart from the trainer's.

    python bench/closed_loop.py ../shared/data/eval/cranfield --job configs/cranfield.yaml \\
        --train configs/train-cranfield.yaml --limit 1400 --work out/loop-cranfield
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ["HF_HUB_OFFLINE"] = "1"

from pipeline.cache.requests import CachingGenerator, RequestCache
from pipeline.config import JobConfig, load_config
from pipeline.embedding.data import write_version
from pipeline.embedding.evaluate import evaluate, load_collection
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import TrainConfig, load_train_config
from pipeline.embedding.trainer import Trainer
from pipeline.generate.vllm_offline import open_generator
from pipeline.run import run_job

TEXT_FILTERS = ("length", "language", "heuristics")
EMBEDDING_FILTERS = ("consistency", "round_trip")


def variant_settings() -> dict[str, dict[str, Any]]:
    """Which filter groups, dedup and mining each variant switches on."""
    every = (*TEXT_FILTERS, *EMBEDDING_FILTERS)
    return {
        "no filters": {"filters": (), "dedup": False, "negatives": False},
        "text filters": {"filters": TEXT_FILTERS, "dedup": False, "negatives": False},
        "embedding filters": {"filters": EMBEDDING_FILTERS, "dedup": False, "negatives": False},
        "all filters": {"filters": every, "dedup": False, "negatives": False},
        "+ dedup": {"filters": every, "dedup": True, "negatives": False},
        "+ hard negatives": {"filters": every, "dedup": True, "negatives": True},
    }


def job_for(base: Path, beir: Path, name: str, variant: dict[str, Any], work: Path) -> JobConfig:
    """The base job on the BEIR corpus, with the variant's switches."""
    raw = load_config(base).model_dump(mode="json")
    raw["name"] = name
    raw["input"] |= {"path": str(beir / "corpus.jsonl"), "id_column": "_id",
                     "title_column": "title", "language_column": None}  # fmt: skip
    raw["output"]["dir"] = str(work / "data")
    for check in (*TEXT_FILTERS, *EMBEDDING_FILTERS):
        raw["filters"][check]["enabled"] = check in variant["filters"]
    dedup = raw["dedup"]
    dedup["exact"] = dedup["near"]["enabled"] = dedup["semantic"]["enabled"] = variant["dedup"]
    dedup["documents"] = {"exact": variant["dedup"], "near": variant["dedup"]}
    raw["negatives"]["enabled"] = variant["negatives"]
    return JobConfig.model_validate(raw)


def title_pairs(beir: Path, limit: int, work: Path) -> tuple[Path, int] | None:
    """The reference dataset: the first `limit` documents' titles as their queries."""
    rows = []
    with (beir / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for line in corpus:
            doc = json.loads(line)
            if len(rows) == limit:
                break
            if doc.get("title", "").strip() and doc.get("text", "").strip():
                rows.append({"query": doc["title"].strip(), "positive": doc["text"].strip(),
                             "doc_id": str(doc["_id"])})  # fmt: skip
    if not rows:
        return None
    folder = work / "data" / "titles"
    if not (folder / "manifest.json").is_file():
        write_version(folder, rows)
    return folder, len(rows)


def train_and_eval(
    train: TrainConfig, data: Path, out: Path, collection: Any, max_steps: int | None
) -> tuple[dict[str, float], int]:
    settings = train.model_copy(
        update={
            "data": [data],
            "output_dir": out,
            "max_steps": max_steps,
            "epochs": 1000 if max_steps else train.epochs,
            "save_every": 0,
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(settings)
    final = trainer.train()
    return evaluate(Embedder(final), collection), trainer.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    parser.add_argument("--job", type=Path, required=True, help="job config (model, prompts)")
    parser.add_argument("--train", type=Path, required=True, help="training config")
    parser.add_argument("--limit", type=int, required=True, help="documents to generate from")
    parser.add_argument("--work", type=Path, required=True, help="folder for everything made")
    parser.add_argument("--steps", type=int, help="equal-steps budget (default: no filters' steps)")
    parser.add_argument("--variants", nargs="*", help="subset of variants to run")
    parser.add_argument("--titles", action=argparse.BooleanOptionalAction, default=True,
                        help="add the titles-as-queries reference row")  # fmt: skip
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    collection = load_collection(args.beir)
    train = load_train_config(args.train)
    variants = variant_settings()
    chosen = args.variants or list(variants)

    base = job_for(args.job, args.beir, "generate", variants["no filters"], args.work)
    generations = CachingGenerator(
        RequestCache(args.work / "cache"),
        base.generator.model,
        base.seed,
        opener=lambda: open_generator(base.generator, base.seed),
    )

    results_file = args.work / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if "zero-shot" not in results:
        results["zero-shot"] = {
            "pairs": 0,
            "one epoch": evaluate(Embedder(train.model), collection),
        }
    steps = args.steps
    titles = title_pairs(args.beir, args.limit, args.work) if args.titles else None
    if titles and "titles as queries" not in results:
        results["titles as queries"] = {"pairs": titles[1], "version": str(titles[0])}
    for name in chosen + (["titles as queries"] if titles else []):
        slug = name.replace(" ", "-").replace("+", "plus")
        if name not in results:
            # A version left by an interrupted earlier attempt would dedup this one away.
            shutil.rmtree(args.work / "data" / slug, ignore_errors=True)
            config = job_for(args.job, args.beir, slug, variants[name], args.work)
            start = time.perf_counter()
            summary = run_job(config, generator=generations, limit=args.limit, progress=False)
            print(f"{name}: {summary.kept} pairs in {time.perf_counter() - start:.0f} s "
                  f"({summary.requests_generated} requests generated)")  # fmt: skip
            results[name] = {"pairs": summary.kept, "version": str(summary.version_dir)}
        entry = results[name]
        data = Path(entry["version"])
        if "one epoch" not in entry:
            scores, taken = train_and_eval(train, data, args.work / "train" / slug / "epoch",
                                           collection, None)  # fmt: skip
            entry |= {"one epoch": scores, "one epoch steps": taken}
        steps = steps or results["no filters"].get("one epoch steps")
        if "equal steps" not in entry and steps == entry["one epoch steps"]:
            entry |= {"equal steps": entry["one epoch"], "equal steps n": steps}  # same run
        if "equal steps" not in entry and steps:
            scores, taken = train_and_eval(train, data, args.work / "train" / slug / "steps",
                                           collection, steps)  # fmt: skip
            entry |= {"equal steps": scores, "equal steps n": taken}
        results_file.write_text(json.dumps(results, indent=2))
        print_table(results, steps)


def print_table(results: dict[str, Any], steps: int | None) -> None:
    print(f"\n{'variant':<20} {'pairs':>6} | one epoch: steps nDCG@10 R@100 MRR@10 "
          f"| {steps} steps: nDCG@10 R@100 MRR@10")  # fmt: skip
    for name, entry in results.items():
        cells = [f"{name:<20} {entry['pairs']:>6}"]
        for mode, steps_key in (("one epoch", "one epoch steps"), ("equal steps", None)):
            s = entry.get(mode)
            if s is None:
                cells.append(" " * 30)
                continue
            taken = f"{entry.get(steps_key, 0):>5} " if steps_key else ""
            cells.append(f"{taken}{s['ndcg@10']:.4f} {s['recall@100']:.4f} {s['mrr@10']:.4f}")
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
