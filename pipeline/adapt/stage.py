"""The adapter stage: after training (and the merge), fit the trained model to the teacher's
ranking of the corpus and write the final model: with a linear map as a Dense layer
(pipeline.embedding.dense, `fit: linear`) or with every weight refitted (`fit: encoder`,
pipeline.adapt.encoder).

Why a stage of its own: margin-MSE on a pair's few mined negatives moves the model little,
while the job's fused teacher (the embedder with BM25) ranks the whole corpus better than
the student on some collections. With the corpus embedded once, a map after pooling can be
fitted to that whole ranking, for the generated queries and for sentences of the corpus,
in minutes on a CPU. Where the user has a log of the collection's own queries (no
judgements needed), those teach the map best: they are the queries it will be asked. It
knows no executor: it reads a job config, query files and a model folder.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.adapt.crops import crops
from pipeline.adapt.encoder import fit_encoder
from pipeline.adapt.lesson import POOLED, Lesson, every_row, sampled_weights, taught, taught_pooled
from pipeline.adapt.linear import Fit, fit_linear
from pipeline.config.errors import UserError
from pipeline.config.job import JobConfig, load_config
from pipeline.corpus.index import CorpusIndex
from pipeline.corpus.nearest import query_blocks
from pipeline.corpus.reader import read_batches, read_queries
from pipeline.corpus.survey import check_corpus
from pipeline.dataset.manifest import write_json_atomic
from pipeline.dataset.records import Document
from pipeline.dedup.text import normalize
from pipeline.embedding.dense import with_dense
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import AdapterConfig, FitKind
from pipeline.embedding.trainer import Trainer
from pipeline.teacher.scorers import FusedTeacher

REPORT = "adapter.json"  # beside the checkpoints: what the fit saw and how far it got
QUERIES = "adapter.queries"  # the setting named in a query file's errors
# The settings the other fit reads, left out of the report.
UNUSED = {"linear": {"encoder"}, "encoder": {"reg", "steps", "learning_rate", "batch_size"}}


def check_adapter(settings: AdapterConfig) -> JobConfig:
    """Everything the adapter reads, checked before any training: its job and its query
    files; returns the job."""
    job = adapter_job(settings)
    logged_queries(settings, [])
    return job


def adapter_job(settings: AdapterConfig) -> JobConfig:
    """The adapter's job: its corpus must be readable and its teacher fused (the only
    teacher that scores every document of the corpus)."""
    job = load_config(settings.job)
    if job.teacher.kind != "fused":
        raise UserError(
            f"adapter.job {settings.job}: teacher.kind is {job.teacher.kind}; the adapter "
            "learns the fused teacher's ranking of the whole corpus (teacher.kind: fused)"
        )
    check_corpus(job.input)
    return job


def logged_queries(settings: AdapterConfig, known: list[str]) -> list[str]:
    """The query files' texts, each once (a log repeats its popular queries), without
    blanks and without those in `known` (the generated ones), in the files' order."""
    seen = {normalize(text) for text in known}
    out = []
    for path in settings.queries:
        for text in read_queries(path, QUERIES):
            key = normalize(text)
            if key and key not in seen:
                seen.add(key)
                out.append(text.strip())
    return out


def job_documents(job: JobConfig) -> list[Document]:
    """The adapter job's corpus: the documents the lesson (and a validation split) rank."""
    documents = [doc for docs, _ in read_batches(job.input) for doc in docs]
    if not documents:
        raise UserError(f"adapter.job: {job.input.path} has no documents")
    return documents


def corpus_index(job: JobConfig, embedder: Embedder) -> CorpusIndex:
    """The adapter job's corpus embedded by `embedder`."""
    documents = job_documents(job)
    with tqdm(total=len(documents), desc="adapter: corpus", unit="doc") as bar:
        return CorpusIndex.build(documents, embedder, on_done=bar.update)


def lesson(
    model: Path,
    queries: list[str],
    settings: AdapterConfig,
    seed: int = 0,
    index: CorpusIndex | None = None,
    held_out: frozenset[str] = frozenset(),
) -> Lesson:
    """Embed the adapter job's corpus (unless `index` holds it, embedded by `model`) and the
    queries (the given ones, the query files', the crops of every document but the
    `held_out` ones, which a validation split keeps unseen) with `model`; score them by the
    job's fused teacher (z scale: the softmax over the corpus needs the mix itself); each
    query keeps the scores of its taught documents (pipeline.adapt.lesson)."""
    job = adapter_job(settings)
    logged = logged_queries(settings, queries)  # read once, before the corpus is embedded
    embedder = Embedder(model)
    # Searched as the job's corpus is (the teacher's candidates past `exact_below`).
    index = replace(index or corpus_index(job, embedder), exact_below=job.embedder.exact_below)
    cropped = [t for d, t in zip(index.doc_ids, index.texts, strict=True) if d not in held_out]
    texts = queries + logged + crops(cropped, settings.crops, seed)
    with tqdm(total=len(texts), desc="adapter: queries", unit="query") as bar:
        vectors = embedder.encode_queries(texts, on_done=bar.update)
    teacher = FusedTeacher.from_config(index, job.teacher, "z")
    size, rng = len(index.doc_ids), np.random.default_rng(seed)
    # A block of queries at a time: only the taught part of each block's table is kept.
    blocks = query_blocks(len(texts), size)
    top, sampled = settings.top, settings.sampled
    if whole_table(len(texts), size, settings):
        targets = np.empty((len(texts), size), dtype=np.float32)  # filled, not concatenated
        for block in blocks:
            targets[block] = teacher.corpus_scores(texts[block], vectors[block])
        return Lesson(index, texts, vectors, every_row(len(texts), size), targets, len(logged))
    if index.exhaustive:
        parts = [taught(teacher.corpus_scores(texts[b], vectors[b]), top, sampled, rng)
                 for b in blocks]  # fmt: skip
    else:  # no whole-corpus row per query: a block's tables are its candidates' (lesson.py)
        parts = [taught_pooled(teacher, texts[i : i + POOLED], vectors[i : i + POOLED], top,
                               sampled, rng) for i in range(0, len(texts), POOLED)]  # fmt: skip
    rows, targets = (np.concatenate(side) for side in zip(*parts, strict=True))
    weights = sampled_weights(top, sampled, size)
    return Lesson(index, texts, vectors, rows, targets, len(logged), weights)


def whole_table(queries: int, size: int, settings: AdapterConfig) -> bool:
    """Whether every query is taught every document: where the table fits
    `whole_table_gib` (exact, and small beside the corpus vectors) or the taught part would
    be the whole corpus anyway."""
    gib = queries * size * 4 / 2**30
    return gib <= settings.whole_table_gib or settings.top + settings.sampled >= size


def fit(taught: Lesson, settings: AdapterConfig, seed: int, device: torch.device) -> Fit:
    """The adapter `settings` describe, fitted on a lesson."""
    return fit_linear(
        taught.vectors,
        taught.index.vectors,
        taught.rows,
        taught.targets,
        taught.weights,
        reg=settings.reg,
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        temperature=settings.temperature,
        batch_size=settings.batch_size,
        seed=seed,
        device=device,
    )


def fit_adapter(
    model: Path, taught: Lesson, settings: AdapterConfig, kind: FitKind, trainer: Trainer, out: Path
) -> dict[str, object]:
    """Fit the adapter of `kind` (linear or encoder) on the lesson of `model`, write the
    adapted model to `out`, and return the fit's report: what it saw and how far it got."""
    seed, device = trainer.config.seed, trainer.device
    if kind == "encoder":
        before, after = fit_encoder(
            model, taught, settings, instruction=trainer.instruction, seed=seed, device=device,
            out=out,
        )  # fmt: skip
    else:
        fitted = fit(taught, settings, seed, device)
        with_dense(model, fitted.weight, out)
        before, after = fitted.held_out_before, fitted.held_out_after
    return {
        "queries": len(taught.texts),
        "generated": len(trainer.examples),
        "logged": taught.logged,
        "held_out_kl_before": before,
        "held_out_kl_after": after,
        **settings.model_dump(mode="json", exclude={"queries", *UNUSED[kind]}),
        "fit": kind,
        "query_files": [str(path) for path in settings.queries],
    }


def finish_training(trainer: Trainer) -> Path:
    """Train (from the trainer's current step), then run the adapter stage if the config
    has one; returns the final model. The adapter's job is checked before training."""
    settings = trainer.config.adapter
    if settings is not None:
        check_adapter(settings)
    trained = trainer.train()
    if settings is None:
        return trained
    queries = [example.query for example in trainer.examples]
    taught = lesson(trained, queries, settings, trainer.config.seed)
    final = trainer.final_dir
    report = fit_adapter(trained, taught, settings, settings.fit or "linear", trainer, final)
    write_json_atomic(report, trainer.config.output_dir / REPORT)
    return final


def adapter_report(output_dir: Path) -> dict[str, object] | None:
    """The last adapter stage's report in a training output folder, if there is one."""
    path = output_dir / REPORT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
