"""Our trainer vs sentence-transformers' MultipleNegativesRankingLoss, same everything.

Same model (the offline all-MiniLM-L6-v2), same pairs (the bundled corpus: title as query,
passage as positive), same batches in the same order, batch size, sequence length,
optimizer and learning rate. Each side runs in its own child process so its peak memory
(max RSS) is its own; the first step is a warm-up and is not timed. Ours runs three ways:
its default (each side sorted by length, passes of 16 texts), one padded pass a side (what
MNRL does), and GradCache chunks of 8 (the memory saver).
The sentence-transformers side is a plain loop around its model and loss (no Trainer, so
neither side pays for data-loading machinery the other lacks).

The host's speed drifts, so the sides alternate over rounds (order reversed each round)
and each side's best round is compared; every round is printed.

    python bench/train.py [--steps 8] [--batch 32] [--max-length 128] [--rounds 2]
        [--corpus CORPUS.jsonl]   # id/_id, title, text; default: the bundled sample corpus
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "pipeline" / "data" / "sample_corpus.jsonl"


def pairs_version(folder: Path, corpus: Path) -> Path:
    """A dataset version of (title, passage) pairs from a corpus file."""
    from pipeline.embedding.data import write_version

    docs = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    pairs = [
        {"query": d["title"], "positive": d["text"], "doc_id": str(d.get("id", d.get("_id")))}
        for d in docs
        if d.get("title") and d.get("text")
    ]
    return write_version(folder, pairs)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(
    args: argparse.Namespace, data: Path, chunk: int, passes: int | None
) -> dict[str, float]:
    from pipeline.embedding.train_config import TrainConfig
    from pipeline.embedding.trainer import Trainer
    from pipeline.models.tiny_encoder import minilm_path

    out = Path(tempfile.mkdtemp())
    config = TrainConfig(
        model=str(minilm_path()),
        data=[data],
        output_dir=out,
        batch_size=args.batch,
        chunk_size=chunk,
        pass_size=passes,
        max_length=args.max_length,
        max_steps=args.steps + 1,
        learning_rate=2e-5,
        warmup_ratio=0.0,
        loss={"temperature": 0.05, "query_query": False, "doc_doc": False},
    )
    trainer = Trainer(config)
    batches = trainer.batches()
    trainer.train_step(next(batches))  # warm-up
    start = time.perf_counter()
    for batch in batches:
        trainer.train_step(batch)
    seconds = time.perf_counter() - start
    return {"samples_per_s": args.steps * args.batch / seconds, "peak_mib": peak_mib()}


def run_sentence_transformers(args: argparse.Namespace, data: Path) -> dict[str, float]:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from pipeline.embedding.data import epoch_order, load_examples
    from pipeline.embedding.model import query_text
    from pipeline.models.tiny_encoder import minilm_path

    torch.manual_seed(0)
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    model.max_seq_length = args.max_length
    model.train()
    loss = MultipleNegativesRankingLoss(model, scale=20.0)  # scale 20 = temperature 0.05
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    examples = load_examples([data], 0)
    order = epoch_order(len(examples), 0, 0)

    def step(index: int) -> None:
        batch = [examples[i] for i in order[index * args.batch : (index + 1) * args.batch]]
        features = [
            model.preprocess([query_text(e.query, e.instruction) for e in batch]),
            model.preprocess([e.positive for e in batch]),
        ]
        value = loss(features, torch.arange(len(batch)))
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(0)  # warm-up
    start = time.perf_counter()
    for index in range(1, args.steps + 1):
        step(index)
    seconds = time.perf_counter() - start
    return {"samples_per_s": args.steps * args.batch / seconds, "peak_mib": peak_mib()}


def child(args: argparse.Namespace, side: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--side", side, "--data", str(args.data)]
    command += ["--steps", str(args.steps), "--batch", str(args.batch)]
    command += ["--max-length", str(args.max_length)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--side", choices=["ours", "ours-one-pass", "ours-chunked", "st"])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.side:
        if args.side == "st":
            result = run_sentence_transformers(args, args.data)
        else:
            chunk = 8 if args.side == "ours-chunked" else args.batch * 2
            result = run_ours(args, args.data, chunk, None if args.side == "ours-one-pass" else 16)
        print(json.dumps(result))
        return
    args.data = pairs_version(Path(tempfile.mkdtemp()) / "v0001", args.corpus)
    print(f"MiniLM-L6, batch {args.batch}, max length {args.max_length}, {args.steps} timed steps")
    sides = ["st", "ours", "ours-one-pass", "ours-chunked"]
    rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for number in range(args.rounds):
        for side in sides if number % 2 == 0 else sides[::-1]:
            result = child(args, side)
            rounds[side].append(result)
            print(f"round {number + 1} {side:>13}: {result['samples_per_s']:6.1f} samples/s")
    results = {
        side: {
            "samples_per_s": max(r["samples_per_s"] for r in runs),
            "peak_mib": min(r["peak_mib"] for r in runs),
        }
        for side, runs in rounds.items()
    }
    base = results["st"]
    for side, result in results.items():
        print(
            f"best {side:>13}: {result['samples_per_s']:6.1f} samples/s "
            f"(x{result['samples_per_s'] / base['samples_per_s']:.2f})  "
            f"peak {result['peak_mib']:7.0f} MiB (x{result['peak_mib'] / base['peak_mib']:.2f})"
        )


if __name__ == "__main__":
    main()
