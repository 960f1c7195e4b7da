"""A probe of a lever not yet built into the trainer: a linear adapter on a trained model,
fitted listwise to the job's fused teacher over the whole corpus, evaluated on the
collection's real queries beside the model without it (the baseline, same script).

Why: margin-MSE on a pair's three or seven mined negatives gives the student a few margins
per generated query, and 48 steps of it moved all-MiniLM-L6-v2 by +0.7 nDCG@10 on
Cranfield; the teacher (the embedder fused with BM25) is 2-3 points stronger there. A
symmetric map W after pooling, s(q, d) = cos(Wq, Wd), started at the identity and pulled
back to it (`reg` x ||W - I||^2), costs nothing to fit once the corpus is embedded, so
it can learn from the teacher's whole distribution over the corpus (KL between the two
softmaxes at temperature `tau`) for thousands of queries: the pairs' generated queries and
crops of the corpus's own sentences (its first three after the title; a window of 6-14
words where a text has no sentence breaks). The teacher's dense half is the probed model.
`reg` is chosen by the KL on a held-out fifth of the queries, never by the real queries.

    python bench/adapter_probe.py ../shared/data/eval/cranfield \\
        --data out/loop-cranfield/data/4c78edadd7/v0001 \\
        --model out/loop-cranfield/train/e5c8491cd4/final --reg 0.3 0.1 0.03 0.01
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from pipeline.embedding.evaluate import Collection, load_collection, metrics, search
from pipeline.embedding.inference import Embedder
from pipeline.index.corpus import CorpusIndex
from pipeline.records import Document
from pipeline.teacher.scorers import FusedTeacher


def crops(corpus: Path, per_doc: int, seed: int) -> list[str]:
    """Queries cut from the corpus itself: sentences 2..per_doc+1 of each text (the first
    repeats the title in Cranfield), or one window of 6-14 words where there are none."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"]
            sentences = [s.strip() for s in re.split(r"\s*[.!?]\s+", text)]
            picked = [s for s in sentences[1 : per_doc + 1] if 4 <= len(s.split()) <= 30]
            words = text.split()
            if not picked and len(words) > 16:
                size = int(rng.integers(6, 15))
                start = int(rng.integers(0, len(words) - size))
                picked = [" ".join(words[start : start + size])]
            out.extend(picked)
    return out


def fit(
    queries: np.ndarray,
    docs: np.ndarray,
    targets: np.ndarray,
    reg: float,
    steps: int,
    tau: float,
    batch: int,
    seed: int,
) -> tuple[torch.Tensor, float]:
    """W fitted on four fifths of the queries, and the KL on the held-out fifth."""
    order = np.random.default_rng(seed).permutation(len(queries))
    held, train = order[: len(order) // 5], order[len(order) // 5 :]
    eye = torch.eye(docs.shape[1])
    weight = torch.nn.Parameter(eye.clone())
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    q_all, d_all, t_all = (torch.from_numpy(a) for a in (queries, docs, targets))

    def kl(rows: np.ndarray) -> torch.Tensor:
        q = F.normalize(q_all[rows] @ weight.T, dim=-1)
        d = F.normalize(d_all @ weight.T, dim=-1)
        student = torch.log_softmax(q @ d.T / tau, dim=-1)
        teacher = torch.log_softmax(t_all[rows] / tau, dim=-1)
        return (teacher.exp() * (teacher - student)).sum(-1).mean()

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = train if len(train) <= batch else rng.choice(train, batch, replace=False)
        optimizer.zero_grad()
        loss = kl(rows) + reg * ((weight - eye) ** 2).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return weight.detach(), float(kl(held))


def scores(
    collection: Collection, queries: np.ndarray, docs: np.ndarray, weight: torch.Tensor
) -> dict[str, float]:
    """The real queries' metrics with W applied to both sides."""

    def mapped(vectors: np.ndarray) -> np.ndarray:
        return F.normalize(torch.from_numpy(vectors) @ weight.T, dim=-1).numpy()

    qids = list(collection.queries)
    run = search(mapped(queries), mapped(docs), qids, collection.doc_ids)
    return metrics(collection.qrels, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels")
    parser.add_argument("--data", type=Path, required=True, help="a dataset version (queries)")
    parser.add_argument("--model", type=Path, required=True, help="the trained model to adapt")
    parser.add_argument("--reg", type=float, nargs="+", default=[0.3, 0.1, 0.03, 0.01])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tau", type=float, default=0.05)
    parser.add_argument("--crops", type=int, default=3, help="sentences per document")
    parser.add_argument("--batch", type=int, default=4096, help="queries per step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    collection = load_collection(args.beir)
    table = pq.read_table(sorted((args.data / "data").glob("*.parquet")))
    generated = [str(q) for q in table.column("query").to_pylist()]
    texts = generated + crops(args.beir / "corpus.jsonl", args.crops, args.seed)
    embedder = Embedder(args.model)
    with (args.beir / "corpus.jsonl").open(encoding="utf-8") as lines:
        documents = [Document(str(d["_id"]), d["text"]) for d in map(json.loads, lines)]
    index = CorpusIndex.build(documents, embedder)
    vectors = embedder.encode_queries(texts)
    targets = FusedTeacher(index, 0.7, 0.3, "z").corpus_scores(texts, vectors)
    real = embedder.encode_queries([collection.queries[q] for q in collection.queries])
    evaluated = embedder.encode_documents(collection.doc_texts)  # title + text, as eval does
    eye = torch.eye(index.vectors.shape[1])
    base = scores(collection, real, evaluated, eye)
    print(f"{len(generated)} generated queries + {len(texts) - len(generated)} crops, "
          f"{len(documents)} documents")  # fmt: skip
    print(f"{'model':<22} {'held-out KL':>11} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7}")
    print(f"{'without adapter':<22} {'':>11} {base['ndcg@10']:8.4f} {base['recall@100']:7.4f} "
          f"{base['mrr@10']:7.4f}")  # fmt: skip
    fitted = []
    for reg in args.reg:
        weight, held = fit(vectors, index.vectors, targets, reg, args.steps, args.tau,
                           args.batch, args.seed)  # fmt: skip
        got = scores(collection, real, evaluated, weight)
        fitted.append((held, reg, got))
        print(f"{'adapter reg ' + str(reg):<22} {held:11.4f} {got['ndcg@10']:8.4f} "
              f"{got['recall@100']:7.4f} {got['mrr@10']:7.4f}", flush=True)  # fmt: skip
    held, reg, got = min(fitted, key=lambda item: item[0])
    print(
        f"chosen by held-out KL: reg {reg}; nDCG@10 {got['ndcg@10']:.4f} against "
        f"{base['ndcg@10']:.4f} without, ratio {got['ndcg@10'] / base['ndcg@10']:.3f}"
    )


if __name__ == "__main__":
    main()
