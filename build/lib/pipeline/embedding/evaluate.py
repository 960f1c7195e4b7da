"""Retrieval evaluation on a BEIR-layout collection: nDCG@10, Recall@100, MRR@10.

Documents are encoded as `title + " " + text`, as BEIR does; queries with the model's
query prompt (or a given instruction). Scores are cosine similarities of unit vectors.
The metrics follow trec_eval's definitions (linear gains, log2 discount, relevance > 0,
ties broken by document id descending), and a test checks them against pytrec_eval.
"""

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config.errors import UserError
from pipeline.corpus.reader import jsonl_rows
from pipeline.embedding.inference import Embedder

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class Collection:
    """A BEIR collection: documents, the queries that have judgements, and the qrels."""

    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: Qrels


def _jsonl(path: Path) -> Iterator[dict]:
    if not path.is_file():
        raise UserError(f"BEIR collection: {path} not found")
    for _number, row in jsonl_rows(path):
        yield row


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_qrels(path: Path) -> Qrels:
    """qrels/test.tsv (query-id, corpus-id, score; header line) as {query: {doc: score}}."""
    if not path.is_file():
        raise UserError(f"BEIR collection: {path} not found")
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(reader, start=1):
            if len(row) < 3 or (number == 1 and not _is_number(row[2])):  # header line
                continue
            if not _is_number(row[2]):
                raise UserError(f"{path}:{number}: score {row[2]!r} is not a number")
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    return qrels


def _field(row: dict, key: str, path: Path) -> str:
    if key not in row:
        raise UserError(f"{path}: a row has no '{key}' field")
    return str(row[key])


def load_collection(root: Path, split: str = "test") -> Collection:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""
    ids, texts = [], []
    for doc in _jsonl(root / "corpus.jsonl"):
        ids.append(_field(doc, "_id", root / "corpus.jsonl"))
        texts.append(f"{doc.get('title') or ''} {doc.get('text') or ''}".strip())
    qrels = load_qrels(root / "qrels" / f"{split}.tsv")
    queries = {
        _field(q, "_id", root / "queries.jsonl"): _field(q, "text", root / "queries.jsonl")
        for q in _jsonl(root / "queries.jsonl")
    }
    queries = {qid: text for qid, text in queries.items() if qid in qrels}
    if not queries:
        raise UserError(f"{root}: no query has judgements in qrels/{split}.tsv")
    return Collection(ids, texts, queries, qrels)


def search(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    query_ids: list[str],
    doc_ids: list[str],
    k: int = 100,
    block: int = 256,
) -> Run:
    """Top-k documents per query by cosine similarity, `block` queries at a time so the
    score matrix never holds more than block x documents."""
    run: Run = {}
    for start in range(0, len(query_ids), block):
        scores = query_vectors[start : start + block] @ doc_vectors.T
        run |= top_k(scores, query_ids[start : start + block], doc_ids, k)
    return run


def top_k(scores: np.ndarray, query_ids: list[str], doc_ids: list[str], k: int = 100) -> Run:
    """The run of a score table (queries x documents): each query's k best documents."""
    k = min(k, len(doc_ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return {
        qid: {doc_ids[j]: float(scores[row, j]) for j in top[row]}
        for row, qid in enumerate(query_ids)
    }


def _ranked(docs: dict[str, float]) -> list[str]:
    # trec_eval order: score descending, then document id descending.
    return [d for d, _ in sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def metrics(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over the judged queries in `run`."""
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    judged = [qid for qid in run if qid in qrels]
    for qid in judged:
        ranking = _ranked(run[qid])
        gains = qrels[qid]
        relevant = {d for d, g in gains.items() if g > 0}
        dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
        ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        totals["ndcg@10"] += dcg / idcg if idcg else 0.0
        if relevant:
            totals["recall@100"] += len(relevant & set(ranking[:100])) / len(relevant)
        first = next((i for i, d in enumerate(ranking[:10]) if d in relevant), None)
        totals["mrr@10"] += 0.0 if first is None else 1 / (first + 1)
    return {name: value / len(judged) if judged else 0.0 for name, value in totals.items()}


def evaluate(
    embedder: Embedder,
    collection: Collection,
    instruction: str | None = None,
    dim: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Encode a BEIR collection with `embedder` and score its retrieval."""
    query_ids = list(collection.queries)
    with tqdm(total=len(query_ids), desc="queries", unit="text", disable=not progress) as bar:
        texts = [collection.queries[q] for q in query_ids]
        queries = embedder.encode_queries(texts, instruction, dim, bar.update)
    with tqdm(
        total=len(collection.doc_ids), desc="documents", unit="text", disable=not progress
    ) as bar:
        documents = embedder.encode_documents(collection.doc_texts, dim, bar.update)
    run = search(queries, documents, query_ids, collection.doc_ids)
    return metrics(collection.qrels, run) | {"queries": float(len(query_ids))}
