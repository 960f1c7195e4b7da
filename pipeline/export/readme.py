"""The README of an export: what it holds and how to train on it with its trainer."""

from pathlib import Path

from pipeline.export.formats import Instructions

HOW = {
    "sentence-transformers": """\
```python
import json
from datasets import load_dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.losses import MultipleNegativesRankingLoss

train = load_dataset("parquet", data_files="data/*.parquet", split="train")
model = SentenceTransformer("all-MiniLM-L6-v2")
trainer = SentenceTransformerTrainer(
    model=model, train_dataset=train, loss=MultipleNegativesRankingLoss(model)
)
trainer.train()
```

Columns `anchor`, `positive`, `negative_1`..`negative_n` are the loss inputs in that
order (every row has all of them). Use `CachedMultipleNegativesRankingLoss` for larger
batches on the same memory.""",
    "flagembedding": """\
```bash
torchrun --nproc_per_node 1 -m FlagEmbedding.finetune.embedder.encoder_only.base \\
    --model_name_or_path BAAI/bge-base-en-v1.5 --train_data ./data \\
    --train_group_size 4 --query_max_len 64 --passage_max_len 256 \\
    --output_dir ./bge-finetuned --learning_rate 1e-5 --num_train_epochs 1
```

One line per pair: `query`, `pos` (one positive), `neg` (the hard negatives), `prompt`
(the pair's instruction; FlagEmbedding prefixes it to the query), `type` (the task
family). With teacher scores the lines also carry `pos_scores` and `neg_scores`: add
`--knowledge_distillation True` to train on them. `--train_group_size` is 1 + the
negatives per query; a pair with fewer negatives is filled by FlagEmbedding's sampling.""",
    "tevatron": """\
```bash
python -m tevatron.driver.train --model_name_or_path bert-base-uncased \\
    --train_dir ./data --output_dir ./tevatron-model \\
    --train_n_passages 4 --per_device_train_batch_size 32 --num_train_epochs 1
```

Tevatron's "relevancy judged" layout, one line per pair: `query_id`, `query`,
`positive_passages` and `negative_passages`, each passage `{docid, title, text}` (the
docid is a hash of the text, so one text keeps one id across pairs). Newer Tevatron
drivers (`tevatron.retriever.driver.train`) read the same lines with `--dataset_name json
--dataset_path ./data`.""",
    "jsonl": """\
```python
from datasets import load_dataset
pairs = load_dataset("json", data_files="data/*.jsonl", split="train")
```

Every column of embsynth's pair schema, unchanged (see embsynth's docs/dataset.md,
"Record schema").""",
}


def readme_text(
    fmt: str,
    versions: list[Path],
    rows: int,
    skipped: int,
    negatives: int | None,
    instructions: Instructions,
    superseded: int = 0,
) -> str:
    lines = [
        f"# embsynth export: {fmt}",
        "",
        f"- pairs: {rows}" + (f" ({skipped} left out: fewer than {negatives} negatives)"
                              if skipped else ""),
        "- from: " + ", ".join(f"`{v}`" for v in versions),
        "- instructions: " + (
            "written into each query as `Instruct: ...\\nQuery:...` where the format has no "
            "prompt field" if instructions == "inline" else "left out"
        ),
    ]  # fmt: skip
    if superseded:
        lines.append(f"- left out: {superseded} pairs of documents a later version changed "
                     "or deleted (superseded)")  # fmt: skip
    if negatives is not None:
        lines.append(f"- negative columns: {negatives}")
    return "\n".join([*lines, "", "## Train on it", "", HOW[fmt], ""])
