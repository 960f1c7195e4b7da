"""Does the validation split predict the real queries? `embsynth train` with `select` on a
BEIR collection's generated pairs, every candidate (the base model first) also scored on
the collection's judged queries, which the choice never sees.

Prints each candidate's figures on the split and on the real queries, the rank correlation
of the two orderings (Spearman and Kendall, for the split's nDCG@10 and for its agreement
with the teacher), the regret (real nDCG@10 of the best candidate minus that of the one
chosen) and the chosen model's gain over the base. Results go to WORK/selection.json.

    python bench/selection.py ../shared/data/eval/cranfield --train configs/train-cranfield.yaml \\
        --work out/select-cranfield
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from scipy.stats import kendalltau, spearmanr

from pipeline.corpus.index import CorpusIndex
from pipeline.embedding.evaluate import Collection, load_collection, metrics, search
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import load_train_config
from pipeline.embedding.trainer import Trainer
from pipeline.generation.backends.engine_settings import read_cpuinfo
from pipeline.selection.choose import REPORT, ModelCandidate, train_and_choose


def real_figures(model: Path, index: CorpusIndex, collection: Collection) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 of `model` on the collection's judged queries; the
    corpus vectors are the split's where the texts are the collection's (no title), else
    a new pass over the collection as `embsynth eval` encodes it."""
    embedder = Embedder(model)
    ids = list(collection.queries)
    queries = embedder.encode_queries([collection.queries[q] for q in ids])
    same = len(index.doc_ids) == len(collection.doc_ids) and all(
        index.rows.get(d) is not None and index.texts[index.rows[d]].strip() == t
        for d, t in zip(collection.doc_ids, collection.doc_texts, strict=True)
    )
    if same:
        documents = index.vectors[[index.rows[d] for d in collection.doc_ids]]
    else:
        documents = embedder.encode_documents(collection.doc_texts)
    return metrics(collection.qrels, search(queries, documents, ids, collection.doc_ids))


def machine() -> str:
    """The CPU, its core count and the flags that decide the speed of every figure."""
    name, flags = read_cpuinfo()
    wide = sorted(flags & {"avx512f", "avx512_bf16", "avx2"})
    return f"{name}, {os.cpu_count()} cores, {' '.join(wide)}"


def correlation(a: list[float], b: list[float]) -> dict[str, float]:
    """Spearman's rho and Kendall's tau of two orderings of the same candidates."""
    return {"spearman": float(spearmanr(a, b)[0]), "kendall": float(kendalltau(a, b)[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    parser.add_argument("--train", type=Path, required=True, help="training config with select")
    parser.add_argument("--work", type=Path, required=True, help="folder for the training run")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    args = parser.parse_args()
    config = load_train_config(args.train)
    if config.select is None:
        parser.error(f"{args.train} has no select section")
    config.output_dir = args.work / "train"
    if args.seed is not None:
        config.seed = args.seed
    collection = load_collection(args.beir)
    start = time.perf_counter()
    real: dict[str, dict[str, float]] = {}

    def on_measured(candidate: ModelCandidate, index: CorpusIndex) -> None:
        real[candidate.name] = real_figures(candidate.model, index, collection)
        print(f"{candidate.name}: split {candidate.figures} real {real[candidate.name]}")

    trainer = Trainer(config)
    trainer.resume()
    train_and_choose(trainer, on_measured)
    report = json.loads((config.output_dir / REPORT).read_text())
    rows = [c | {"real": real[c["name"]]} for c in report["candidates"]]
    real_ndcg = [r["real"]["ndcg@10"] for r in rows]
    best = max(rows, key=lambda r: r["real"]["ndcg@10"])
    chosen = next(r for r in rows if r["name"] == report["chosen"])
    summary = {
        "machine": machine(),
        "seconds": round(time.perf_counter() - start),
        "split": report["split"],
        "chosen": report["chosen"],
        "why": report["why"],
        "best_on_real": best["name"],
        "regret": best["real"]["ndcg@10"] - chosen["real"]["ndcg@10"],
        "gain_over_base": chosen["real"]["ndcg@10"] - rows[0]["real"]["ndcg@10"],
        "split_ndcg_vs_real": correlation([r["ndcg@10"] for r in rows], real_ndcg),
        "rows": rows,
    }
    if all("teacher@10" in r for r in rows):
        summary["teacher_vs_real"] = correlation([r["teacher@10"] for r in rows], real_ndcg)
    (args.work / "selection.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'candidate':<18} split nDCG@10 MRR@10 teacher@10 | real nDCG@10 R@100 MRR@10")
    for r in rows:
        mark = "*" if r["name"] == report["chosen"] else " "
        teacher = f"{r.get('teacher@10', float('nan')):.3f}"
        print(f"{mark}{r['name']:<17} {r['ndcg@10']:.4f} {r['mrr@10']:.4f} {teacher:>10} | "
              f"{r['real']['ndcg@10']:.4f} {r['real']['recall@100']:.4f} "
              f"{r['real']['mrr@10']:.4f}")  # fmt: skip
    print(report["why"])
    for key in ("split_ndcg_vs_real", "teacher_vs_real"):
        if key in summary:
            print(f"{key}: spearman {summary[key]['spearman']:.3f}, "
                  f"kendall {summary[key]['kendall']:.3f}")  # fmt: skip
    gain, seconds = summary["gain_over_base"], summary["seconds"]
    print(f"regret {summary['regret']:.4f} (best on the real queries: {best['name']}); "
          f"chosen over the base {gain:+.4f}; {seconds} s")  # fmt: skip


if __name__ == "__main__":
    main()
