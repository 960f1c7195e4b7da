"""The bundled trainer: a plain PyTorch loop over InfoNCE with GradCache-style chunking.

A step embeds `batch_size` queries and their documents. When that does not fit in one
forward pass, GradCache keeps in-batch negatives exact: embed every chunk without a graph,
compute the loss on the cached embeddings, then re-run each chunk with a graph and push the
cached embedding gradients through it. The RNG state is replayed per chunk so dropout
masks match between the two passes. Checkpoints hold everything a resumed run needs
(trainable weights, optimizer, schedule, RNG, step), and the data order is a function of
(seed, epoch), so a resumed run takes the same next step as an uninterrupted one.
"""

import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from pipeline.embedding.data import Example, epoch_order, load_examples
from pipeline.embedding.export import export_model
from pipeline.embedding.loss import LossTerms, matryoshka
from pipeline.embedding.model import EmbeddingModel, query_text
from pipeline.embedding.train_config import TrainConfig
from pipeline.errors import UserError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"


def schedule(config: TrainConfig, total: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup, then linear or cosine decay to 0."""
    warmup = int(total * config.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if config.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1 - progress)

    return factor


class Trainer:
    """Trains an EmbeddingModel on embsynth pairs as one TrainConfig says."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.examples = load_examples(config.data, config.hard_negatives)
        self.steps_per_epoch = len(self.examples) // config.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"{len(self.examples)} pairs is fewer than one batch of {config.batch_size}"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.model = EmbeddingModel(config.model, config.pooling, config.max_length)
        if config.lora is not None:
            self._add_lora()
        self.model.train()
        self.terms = LossTerms(
            temperature=config.loss.temperature,
            in_batch=config.loss.in_batch,
            query_query=config.loss.query_query,
            doc_doc=config.loss.doc_doc,
            margin=config.loss.margin,
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = LambdaLR(self.optimizer, schedule(config, self.total_steps))
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.instruction = Counter(e.instruction for e in self.examples).most_common(1)[0][0]

    def _add_lora(self) -> None:
        from peft import LoraConfig, get_peft_model

        lora = self.config.lora
        assert lora is not None
        self.model.backbone = get_peft_model(
            self.model.backbone,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
            ),
        )

    def batches(self) -> Iterator[list[Example]]:
        """The remaining batches from the current step on, epoch after epoch."""
        step = self.step
        while step < self.total_steps:
            epoch, position = divmod(step, self.steps_per_epoch)
            order = epoch_order(len(self.examples), self.config.seed, epoch)
            start = position * self.config.batch_size
            yield [self.examples[i] for i in order[start : start + self.config.batch_size]]
            step += 1

    def train_step(self, batch: list[Example]) -> float:
        """One optimizer step on one batch; returns the loss."""
        queries = [query_text(e.query, e.instruction) for e in batch]
        documents = [e.positive for e in batch]
        owners = list(range(len(batch)))
        for i, example in enumerate(batch):
            documents += example.negatives
            owners += [i] * len(example.negatives)
        owner_ids = torch.tensor(owners)

        def loss_of(vectors: torch.Tensor) -> torch.Tensor:
            return matryoshka(
                vectors[: len(batch)],
                vectors[len(batch) :],
                owner_ids,
                documents,
                self.terms,
                self.config.loss.mrl_dims,
            )

        # Queries and documents are chunked apart: short queries padded to passage length
        # would cost as much as the passages themselves.
        size = self.config.chunk_size
        chunks = [
            group[i : i + size]
            for group in (queries, documents)
            for i in range(0, len(group), size)
        ]
        if len(queries) + len(documents) <= size:
            loss = loss_of(torch.cat([self.model.embed(chunk) for chunk in chunks]))
            loss.backward()
        else:
            loss = self._grad_cache(chunks, loss_of)
        torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.config.max_grad_norm
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _grad_cache(
        self, chunks: list[list[str]], loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        states, cached = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(torch.get_rng_state())
                cached.append(self.model.embed(chunk))
        vectors = torch.cat(cached).requires_grad_()
        loss = loss_of(vectors)
        loss.backward()
        assert vectors.grad is not None
        grads = vectors.grad.split([len(c) for c in chunks])
        after = torch.get_rng_state()
        for chunk, state, grad in zip(chunks, states, grads, strict=True):
            torch.set_rng_state(state)
            self.model.embed(chunk).backward(grad)
        torch.set_rng_state(after)
        return loss

    def train(self) -> Path:
        """Train to the end (from the current step) and export the final model."""
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        log = (self.config.output_dir / "train_log.jsonl").open("a", encoding="utf-8")
        try:
            for batch in self.batches():
                start = time.perf_counter()
                loss = self.train_step(batch)
                self.step += 1
                rate = len(batch) / (time.perf_counter() - start)
                entry = {"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
                self.history.append(entry)
                log.write(json.dumps(entry) + "\n")
                bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.1f}")
                bar.update(1)
                every = self.config.save_every
                if every and self.step % every == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            log.close()
        return export_model(self.model, self.config.output_dir / "final", self.instruction)

    def save_checkpoint(self) -> Path:
        """Write checkpoints/step-NNNNNN: a loadable model plus the trainer state."""
        folder = self.config.output_dir / CHECKPOINTS / f"step-{self.step:06d}"
        export_model(self.model, folder, self.instruction)
        state = {
            "step": self.step,
            "trainable": {
                n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }
        torch.save(state, folder / STATE_FILE)
        self._prune()
        return folder

    def _prune(self) -> None:
        kept = checkpoints(self.config.output_dir)
        for old in kept[: -self.config.keep_checkpoints]:
            shutil.rmtree(old)

    def resume(self) -> int:
        """Load the latest checkpoint, if any; returns the step it resumes from."""
        found = checkpoints(self.config.output_dir)
        if not found:
            return 0
        state = torch.load(found[-1] / STATE_FILE, weights_only=False)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step = state["step"]
        return self.step


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (with trainer state), oldest first."""
    root = output_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
