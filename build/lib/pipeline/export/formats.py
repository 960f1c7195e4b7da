"""One pair row (PAIR_SCHEMA) in each trainer's own shape.

The instruction travels the way each trainer expects: FlagEmbedding has a `prompt` field
per example; sentence-transformers and Tevatron have none per row (their prompts are per
dataset or per run, and one embsynth version mixes instructions), so with
`instructions: inline` it is written into the query in the Qwen3-Embedding form
(`Instruct: ...\\nQuery:...`) and with `none` left out (for a base that never saw
instructions, such as all-MiniLM-L6-v2: see pipeline.embedding.instructions).
"""

import hashlib
from collections.abc import Callable
from typing import Any, Literal

Instructions = Literal["inline", "none"]
Row = dict[str, Any]


def query_text(row: Row, instructions: Instructions) -> str:
    """The query as written for a trainer without a per-row prompt field."""
    if instructions == "inline" and row["instruction"]:
        return f"Instruct: {row['instruction']}\nQuery:{row['query']}"
    return row["query"]


def teacher_split(row: Row) -> tuple[float | None, list[float | None]] | None:
    """The teacher's (positive score, negative scores), or None when the row has none."""
    scores = row.get("teacher_scores") or []
    if not scores:
        return None
    negatives = list(scores[1:]) + [None] * (len(row["negatives"]) - len(scores) + 1)
    return scores[0], negatives[: len(row["negatives"])]


def sentence_transformers(row: Row, instructions: Instructions, negatives: int) -> Row:
    """(anchor, positive, negative_1..n): the column order sentence-transformers' losses
    (MultipleNegativesRankingLoss and kin) take as inputs; every row has n negatives."""
    out = {"anchor": query_text(row, instructions), "positive": row["positive"]}
    for i in range(negatives):
        out[f"negative_{i + 1}"] = row["negatives"][i]
    return out


def flagembedding(row: Row, instructions: Instructions) -> Row:
    """FlagEmbedding's fine-tuning line: query, pos, neg, prompt (and pos_scores/neg_scores
    for `--knowledge_distillation` when the row has teacher scores, a missing one as 0)."""
    out: Row = {"query": row["query"], "pos": [row["positive"]], "neg": list(row["negatives"])}
    if instructions == "inline" and row["instruction"]:
        out["prompt"] = row["instruction"]
    teacher = teacher_split(row)
    if teacher is not None:
        out["pos_scores"] = [teacher[0] or 0.0]
        out["neg_scores"] = [s or 0.0 for s in teacher[1]]
    out["type"] = row["task"]
    return out


def _docid(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tevatron(row: Row, instructions: Instructions) -> Row:
    """Tevatron's training line: query_id, query, positive_passages, negative_passages
    (passages as {docid, title, text}; a passage's docid is a hash of its text, so one text
    has one id across pairs, whether it is a corpus document or a written one)."""
    return {
        "query_id": row["pair_id"],
        "query": query_text(row, instructions),
        "positive_passages": [
            {"docid": _docid(row["positive"]), "title": "", "text": row["positive"]}
        ],
        "negative_passages": [
            {"docid": _docid(text), "title": "", "text": text} for text in row["negatives"]
        ],
    }


def jsonl(row: Row, instructions: Instructions) -> Row:
    """Every column of the pair as it is (the instruction in its own field)."""
    return dict(row)


LINE_FORMATS: dict[str, Callable[[Row, Instructions], Row]] = {
    "flagembedding": flagembedding,
    "tevatron": tevatron,
    "jsonl": jsonl,
}
FORMATS = ("sentence-transformers", *LINE_FORMATS)
