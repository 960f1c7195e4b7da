"""The bundled trainer: a plain PyTorch loop over the configured losses, GradCache-chunked.

Read top to bottom: `Trainer.__init__` loads the data, the model, the objective (the
configured losses, pipeline.embedding.losses, summed with their weights) and the optimizer;
`train` is the loop; `train_step` is one step; `_backward` embeds a step's texts and pushes
the loss's gradient into the model; checkpoints and resuming close the class, and the small
pure helpers follow it.

A step embeds `batch_size` queries and their documents. When that does not fit in one
forward pass, GradCache keeps in-batch negatives exact: embed every chunk without a graph,
compute the loss on the cached embeddings, then re-run each chunk with a graph and push the
cached embedding gradients through it. The RNG state (CPU and GPU) is replayed per chunk so
dropout masks match between the two passes, and the replay is checked against the cache.
Each side's texts are sorted by length and embedded in passes of `pass_size`, so a pass pads
to texts of about its own length. Checkpoints hold everything a resumed run needs (trainable
weights, optimizer, schedule, RNG, step) plus what it was made from (config hash and data
versions), written so a kill never tears one (pipeline.embedding.checkpoint), and the data
order is a function of (seed, epoch), so a resumed run takes the same next step as an
uninterrupted one.
"""

import contextlib
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from pipeline.config.errors import UserError
from pipeline.dataset.writer import chosen_versions
from pipeline.embedding import checkpoint
from pipeline.embedding.checkpoint import checkpoints as checkpoints  # re-exported for the CLI
from pipeline.embedding.data import Example, epoch_order, load_examples
from pipeline.embedding.instructions import use_instructions
from pipeline.embedding.losses import Batch, LossSum, Matryoshka, build_objective
from pipeline.embedding.merge import merge_models
from pipeline.embedding.model import EmbeddingModel, query_text
from pipeline.embedding.save import export_model, write_model
from pipeline.embedding.split import split_pairs
from pipeline.embedding.train_config import TrainConfig

FINAL = "final"
UNMERGED = "unmerged"  # the trained model, when the final one is merged with the base
UNADAPTED = "unadapted"  # the model before the adapter stage, when there is one
CANDIDATES = "candidates"  # with `select`: every candidate model, the trained one first
TRAINED = "trained"
# A replayed chunk differs from its cached pass by float noise; a different dropout mask
# moves vectors by far more than this.
REPLAY_TOLERANCE = 1e-2


class Trainer:
    """Trains an EmbeddingModel on embsynth pairs as one TrainConfig says."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        # The data: every pair of the chosen dataset versions, cut into fixed-size batches.
        self.versions = [v for path in config.data for v in chosen_versions(path, config.versions)]
        self.examples = load_examples(self.versions, config.hard_negatives)
        # With `select`, the held-out documents' pairs are the validation split, never trained.
        self.held_out: list[Example] = []
        if config.select is not None:
            self.examples, self.held_out = split_pairs(
                self.examples, config.select.held_out, config.seed
            )
        self.steps_per_epoch = len(self.examples) // config.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"{len(self.examples)} pairs is fewer than one batch of {config.batch_size}"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        # The saved query prompt: the data's commonest instruction, or none (see instructions).
        self.instruction = (
            Counter(e.instruction for e in self.examples).most_common(1)[0][0]
            if use_instructions(config.instructions, config.model)
            else None
        )
        # The model, seeded so that LoRA's fresh weights repeat.
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.model = EmbeddingModel(config.model, config.pooling, config.max_length)
        if self.model.head is not None:
            raise UserError(
                f"{config.model} has Dense layers after pooling, which the trainer would drop; "
                "train from the model without them (an adapted model's `unadapted` folder)"
            )
        # The objective: the configured losses (or those the older `loss` section means).
        self.objective = build_objective(config.loss_specs())
        self._check_objective(self.objective)
        if config.lora is not None:
            self._add_lora()
        self.model.to(self.device).train()
        # The optimizer, over what is trainable (the LoRA adapters only, with LoRA).
        self.trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = LambdaLR(self.optimizer, schedule(config, self.total_steps))
        self.step = 0
        self.history: list[dict[str, float]] = []

    def _check_objective(self, objective: LossSum) -> None:
        """Refuse, before any step, what the losses cannot do with this model and data."""
        dims = [d for m in objective.modules() if isinstance(m, Matryoshka) for d in m.dims]
        too_big = [d for d in dims if d > self.model.dimension]
        if too_big:
            raise UserError(
                f"Matryoshka dims {too_big} exceed the model's dimension "
                f"{self.model.dimension} (loss.mrl_dims, or a matryoshka loss's dims)"
            )
        if objective.uses_teacher() and not any(e.teacher_scores for e in self.examples):
            raise UserError(
                "a distillation loss (margin_mse) is configured but the data has no "
                "teacher_scores (generate it with a teacher: the job's `teacher` section)"
            )

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

    @property
    def final_dir(self) -> Path:
        """Where the finished model goes."""
        return self.config.output_dir / FINAL

    @property
    def trained_dir(self) -> Path:
        """Where `train` puts its model: the final one, the adapter stage's input, or with
        `select` the first candidate."""
        if self.config.select is not None:
            return self.config.output_dir / CANDIDATES / TRAINED
        return self.config.output_dir / (UNADAPTED if self.config.adapter else FINAL)

    @property
    def origin(self) -> dict[str, object]:
        """What a checkpoint was made from; resuming with anything else is refused."""
        # The adapter is fitted after training, so changing it keeps the checkpoints valid.
        # An unset `losses` is left out so that configs from before it keep their hash.
        # Of `select`, only the split changes what is trained.
        exclude = {"output_dir", "save_every", "adapter", "select"}
        if self.config.losses is None:
            exclude.add("losses")
        settings = self.config.model_dump(mode="json", exclude=exclude)
        if self.config.select is not None:
            settings["held_out"] = self.config.select.held_out
        blob = json.dumps(settings, sort_keys=True).encode()
        return {
            "config_hash": hashlib.sha256(blob).hexdigest()[:16],
            "data": [str(v) for v in self.versions],
        }

    def batches(self) -> Iterator[list[Example]]:
        """The remaining batches from the current step on, epoch after epoch."""
        step = self.step
        while step < self.total_steps:
            epoch, position = divmod(step, self.steps_per_epoch)
            order = epoch_order(len(self.examples), self.config.seed, epoch)
            start = position * self.config.batch_size
            yield [self.examples[i] for i in order[start : start + self.config.batch_size]]
            step += 1

    def train(self) -> Path:
        """Train to the end (from the current step), checkpoint, and export the model (to
        `trained_dir`; the adapter stage, pipeline.adapt, makes the final one from it)."""
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        # A fresh run starts a fresh log; a resumed one continues the log cut at its step.
        log = checkpoint.open_log(self.config.output_dir, append=bool(self.step))
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
        self.save_checkpoint()
        share = self.config.merge_with_base
        if share is None:
            return export_model(self.model, self.trained_dir, self.instruction)
        # The report's last stage: slerp back toward the base keeps what it knew.
        trained = export_model(self.model, self.config.output_dir / UNMERGED, self.instruction)
        return merge_models([trained, Path(self.config.model)], self.trained_dir, t=share)

    def train_step(self, batch: list[Example]) -> float:
        """One optimizer step on one batch; returns the loss."""
        queries = [query_text(e.query, e.instruction if self.instruction else None) for e in batch]
        documents, owners = document_column(batch)
        owner_ids = torch.tensor(owners, device=self.device)
        teacher = (
            torch.tensor(teacher_column(batch), device=self.device)
            if self.objective.uses_teacher()
            else None
        )

        def loss_of(vectors: torch.Tensor) -> torch.Tensor:
            """The objective on the step's vectors: the queries, then the documents."""
            q, d = vectors[: len(batch)], vectors[len(batch) :]
            return self.objective(Batch(q, d, owner_ids, documents, queries, teacher))

        loss = self._backward(queries + documents, len(queries), loss_of)
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _backward(
        self, texts: list[str], queries: int, loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Embed `texts` (the first `queries` of them queries) in length-sorted passes, or in
        GradCache chunks when they exceed chunk_size, and backpropagate `loss_of` them."""
        chunk = self.config.chunk_size
        grad_cache = chunk is not None and len(texts) > chunk
        passes = length_passes(
            self.model.token_counts(texts), queries, chunk if grad_cache else self.config.pass_size
        )
        chunks = [[texts[i] for i in group] for group in passes]
        # The passes' vectors come in pass order; the loss takes them in the texts' order.
        order = torch.tensor([i for group in passes for i in group], device=self.device)
        restore = torch.argsort(order)

        def passes_loss(vectors: torch.Tensor) -> torch.Tensor:
            return loss_of(vectors[restore])

        if grad_cache:
            return self._grad_cache(chunks, passes_loss)
        loss = passes_loss(torch.cat([self._embed(group) for group in chunks]))
        loss.backward()
        return loss

    def _grad_cache(
        self, chunks: list[list[str]], loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """GradCache: the loss on vectors embedded without a graph, then each chunk re-run
        with one (and the same dropout) to take its share of the vectors' gradient."""
        states, cached = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(rng_state())
                cached.append(self._embed(chunk))
        vectors = torch.cat(cached).requires_grad_()
        loss = loss_of(vectors)
        loss.backward()
        assert vectors.grad is not None
        grads = vectors.grad.split([len(c) for c in chunks])
        after = rng_state()
        for chunk, state, grad, first in zip(chunks, states, grads, cached, strict=True):
            set_rng_state(state)
            replay = self._embed(chunk)
            if (replay.detach() - first).abs().max() > REPLAY_TOLERANCE:
                raise RuntimeError("GradCache replay differs from its cached pass")
            replay.backward(grad)
        set_rng_state(after)
        return loss

    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in self.model.tokenize(texts).items()}
        context = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.config.precision == "bf16"
            else contextlib.nullcontext()
        )
        with context:
            return self.model(batch).float()

    def save_checkpoint(self) -> Path:
        """Write checkpoints/step-NNNNNN, whole or not at all: a loadable model plus the
        trainer state."""
        state = {
            "step": self.step,
            "origin": self.origin,
            "trainable": {n: p.detach().clone() for n, p in self.trainable.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }
        return checkpoint.save(
            self.config.output_dir,
            self.step,
            lambda folder: write_model(self.model, folder, self.instruction),
            state,
            self.config.keep_checkpoints,
        )

    def resume(self) -> int:
        """Load the newest checkpoint that loads, if any; returns the step it resumes from."""
        found = checkpoint.load_newest(self.config.output_dir)
        if found is None:
            return 0
        folder, state = found
        if state["origin"] != self.origin:
            raise UserError(
                f"{folder} was made with another config or data "
                f"({state['origin']} vs now {self.origin}); train into a new output_dir"
            )
        with torch.no_grad():
            for name, value in state["trainable"].items():
                self.trainable[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        checkpoint.cut_log(self.config.output_dir, self.step)
        return self.step


def resolve_device(name: str) -> torch.device:
    """The configured device; `auto` takes a CUDA GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for but no CUDA GPU is available")
    return torch.device(name)


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


def rng_state() -> dict[str, object]:
    """The CPU and (if present) CUDA generator states."""
    state: dict[str, object] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, object]) -> None:
    """Put back what `rng_state` took, so a replay or a resumed run draws the same numbers."""
    torch.set_rng_state(state["cpu"])  # type: ignore[arg-type]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])  # type: ignore[arg-type]


def length_passes(counts: list[int], queries: int, size: int | None) -> list[list[int]]:
    """The texts' indices cut into forward passes. A pass pads every text to its longest, so
    queries (the first `queries` texts) never share one with documents, and each side is
    sorted by token count (`counts`) before it is cut every `size` texts (none: one pass a
    side): short abstracts then no longer pay for the long ones beside them."""
    passes = []
    for side in (range(queries), range(queries, len(counts))):
        ordered = sorted(side, key=lambda i: counts[i])
        step = size or max(1, len(ordered))
        passes += [ordered[i : i + step] for i in range(0, len(ordered), step)]
    return passes


def document_column(batch: list[Example]) -> tuple[list[str], list[int]]:
    """The step's documents as the losses lay them out (every positive, then each pair's
    negatives) and, for each, the index of the query it belongs to."""
    documents = [e.positive for e in batch]
    owners = list(range(len(batch)))
    for i, example in enumerate(batch):
        documents += example.negatives
        owners += [i] * len(example.negatives)
    return documents, owners


def teacher_column(batch: list[Example]) -> list[float]:
    """The teacher's scores laid out like the losses' documents (every positive, then each
    pair's negatives), NaN where there is none."""
    nan = float("nan")

    def score(example: Example, slot: int) -> float:
        found = example.teacher_scores[slot] if slot < len(example.teacher_scores) else None
        return nan if found is None else float(found)

    column = [score(e, 0) for e in batch]
    for example in batch:
        column += [score(example, 1 + j) for j in range(len(example.negatives))]
    return column
