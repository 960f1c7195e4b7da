"""The adapter stage's one knob swept: the linear adapter (pipeline.adapt) fitted at several
`reg` on one trained model, each evaluated on the collection's real queries beside the
model without it (the baseline, same script), with the held-out KL of each fit.

The training config's `adapter` fits one `reg` after training; this probes several on a
model trained once (a `final` without an adapter, or an `unadapted` folder), the corpus
embedded once. Without `--data` the adapter learns from the corpus crops alone: what it
gives a model (the base itself, say) with no generated query at all. What the held-out KL
(a fifth of the fit's own queries, never the real ones) would choose is printed last. The
teacher the adapter learns from is ranked on the real queries too, with BM25 stemmed as
configured and as written: the ceiling the adapter reaches for.

    python bench/adapter_probe.py ../shared/data/eval/cranfield \\
        --train configs/train-cranfield.yaml --data out/loop-cranfield/data/4c78edadd7/v0001 \\
        --model out/loop-cranfield/train/e5c8491cd4/unadapted --reg 0.3 0.1 0.03 0.01
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from pipeline.adapt.stage import Lesson, adapter_job, fit, lesson
from pipeline.embedding.evaluate import Collection, load_collection, metrics, search, top_k
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import AdapterConfig, load_train_config
from pipeline.teacher.scorers import FusedTeacher


def scores(
    collection: Collection, queries: np.ndarray, docs: np.ndarray, weight: torch.Tensor
) -> dict[str, float]:
    """The real queries' metrics with W applied to both sides."""

    def mapped(vectors: np.ndarray) -> np.ndarray:
        return F.normalize(torch.from_numpy(vectors) @ weight.T, dim=-1).numpy()

    qids = list(collection.queries)
    run = search(mapped(queries), mapped(docs), qids, collection.doc_ids)
    return metrics(collection.qrels, run)


def teacher_scores(
    collection: Collection, queries: np.ndarray, taught: Lesson, settings: AdapterConfig
) -> dict[str, dict[str, float]]:
    """The real queries' metrics as the adapter's fused teacher ranks its corpus, with the
    configured stemmer and without one."""
    config = adapter_job(settings).teacher
    texts = [collection.queries[q] for q in collection.queries]
    out = {}
    for stemmer in dict.fromkeys([config.bm25_stemmer, "none"]):
        teacher = FusedTeacher.from_config(
            taught.index, config.model_copy(update={"bm25_stemmer": stemmer}), "z"
        )
        table = teacher.corpus_scores(texts, queries)
        run = top_k(table, list(collection.queries), taught.index.doc_ids)
        out[stemmer] = metrics(collection.qrels, run)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    parser.add_argument("--train", type=Path, required=True, help="training config (adapter)")
    parser.add_argument("--data", type=Path, help="a dataset version (queries); none: crops only")
    parser.add_argument("--model", type=Path, required=True, help="the trained model to adapt")
    parser.add_argument("--reg", type=float, nargs="+", default=[0.3, 0.1, 0.03, 0.01])
    args = parser.parse_args()
    config = load_train_config(args.train)
    if config.adapter is None:
        parser.error(f"{args.train} has no adapter section")
    collection = load_collection(args.beir)
    generated: list[str] = []
    if args.data is not None:
        table = pq.read_table(sorted((args.data / "data").glob("*.parquet")))
        generated = [str(q) for q in table.column("query").to_pylist()]
    taught = lesson(args.model, generated, config.adapter, config.seed)
    embedder = Embedder(args.model)
    real = embedder.encode_queries([collection.queries[q] for q in collection.queries])
    evaluated = embedder.encode_documents(collection.doc_texts)  # title + text, as eval does
    base = scores(collection, real, evaluated, torch.eye(real.shape[1]))
    cropped = len(taught.texts) - len(generated) - taught.logged
    print(f"{len(generated)} generated + {taught.logged} logged queries + {cropped} crops, "
          f"{len(taught.index.doc_ids)} documents")  # fmt: skip
    print(f"{'model':<22} {'held-out KL':>11} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7}")
    print(f"{'without adapter':<22} {'':>11} {base['ndcg@10']:8.4f} {base['recall@100']:7.4f} "
          f"{base['mrr@10']:7.4f}")  # fmt: skip
    for stemmer, got in teacher_scores(collection, real, taught, config.adapter).items():
        print(f"{'teacher (' + stemmer + ')':<22} {'':>11} {got['ndcg@10']:8.4f} "
              f"{got['recall@100']:7.4f} {got['mrr@10']:7.4f}")  # fmt: skip
    fitted = []
    for reg in args.reg:
        settings = config.adapter.model_copy(update={"reg": reg})
        got_fit = fit(taught, settings, config.seed, torch.device("cpu"))
        got = scores(collection, real, evaluated, got_fit.weight)
        fitted.append((got_fit.held_out_after, reg, got))
        print(f"{'adapter reg ' + str(reg):<22} {got_fit.held_out_after:11.4f} "
              f"{got['ndcg@10']:8.4f} {got['recall@100']:7.4f} {got['mrr@10']:7.4f}",
              flush=True)  # fmt: skip
    _, reg, got = min(fitted, key=lambda item: item[0])
    print(
        f"chosen by held-out KL: reg {reg}; nDCG@10 {got['ndcg@10']:.4f} against "
        f"{base['ndcg@10']:.4f} without, ratio {got['ndcg@10'] / base['ndcg@10']:.3f}"
    )


if __name__ == "__main__":
    main()
