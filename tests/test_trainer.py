"""The trainer: loss falls, GradCache chunks and length-sorted passes equal one padded pass,
resume equals no interruption, LoRA, and the saved model loads in sentence-transformers
with our vectors."""

import json
import shutil
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from pipeline.embedding.checkpoint import CHECKPOINTS, checkpoints
from pipeline.embedding.data import INSTRUCTION
from pipeline.embedding.inference import Embedder
from pipeline.embedding.train_config import TrainConfig
from pipeline.embedding.trainer import Trainer, length_passes, schedule

QUERIES = ["How does photosynthesis work?", "chess opening principles"]
DOCS = ["Plants turn light into sugar.", "Control the centre and develop your pieces early."]
# Far past the training max_length (64): both sides must truncate at the same length.
LONG = [" ".join(f"chess {i} opening principles, centre control" for i in range(60))]


def config(model: Path, data: Path, out: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {
        "model": str(model),
        "data": [data],
        "output_dir": out,
        "batch_size": 8,
        "chunk_size": 64,
        "hard_negatives": 1,
        "max_length": 64,
        "learning_rate": 5e-4,
        "warmup_ratio": 0.1,
        "seed": 3,
        "instructions": "task",
    }
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig.model_validate(settings | overrides)


def assert_sentence_transformers_agrees(path: Path) -> None:
    st = SentenceTransformer(str(path), device="cpu")
    ours = Embedder(path)
    assert st.prompts["query"] == f"Instruct: {INSTRUCTION}\nQuery:"
    np.testing.assert_allclose(
        st.encode(QUERIES, prompt_name="query"), ours.encode_queries(QUERIES), atol=1e-5
    )
    np.testing.assert_allclose(st.encode(DOCS), ours.encode_documents(DOCS), atol=1e-5)
    assert st.max_seq_length == ours.model.max_length == 64
    np.testing.assert_allclose(st.encode(LONG), ours.encode_documents(LONG), atol=1e-5)
    np.testing.assert_allclose(
        st.encode(LONG, prompt_name="query"), ours.encode_queries(LONG), atol=1e-5
    )


def test_loss_falls_and_the_model_loads_in_sentence_transformers(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    trainer = Trainer(
        config(tiny_encoder, title_pairs, tmp_path / "run", epochs=4, learning_rate=3e-3)
    )
    final = trainer.train()
    losses = [entry["loss"] for entry in trainer.history]
    assert len(losses) == 24  # 48 pairs / batch 8 * 4 epochs
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    assert_sentence_transformers_agrees(final)
    assert (tmp_path / "run" / "train_log.jsonl").read_text().count("\n") == 24


@pytest.mark.parametrize(
    "cut",
    [{"chunk_size": 5}, {"pass_size": 3}],
    ids=["grad-cache-chunks-of-5", "passes-of-3"],
)
def test_chunks_and_passes_give_the_gradients_of_one_padded_pass(
    cut: dict[str, int], title_pairs: Path, tmp_path: Path
) -> None:
    from pipeline.models.tiny_encoder import build_tiny_encoder

    model = build_tiny_encoder(tmp_path / "no-dropout", seed=1, dropout=0.0)
    initial = [
        p.detach().clone()
        for p in Trainer(config(model, title_pairs, tmp_path / "i")).model.parameters()
    ]
    weights = []
    # 16 texts per step: one padded pass a side, or length-sorted GradCache chunks / passes.
    for name, settings in (("one", {"pass_size": None}), ("cut", cut)):
        trainer = Trainer(config(model, title_pairs, tmp_path / name, **settings))
        batch = next(trainer.batches())
        if name == "cut":
            texts = [e.query for e in batch] + [e.positive for e in batch]
            assert len(set(trainer.model.token_counts(texts))) > 2  # the sort has work to do
        trainer.train_step(batch)
        weights.append([p.detach().clone() for p in trainer.model.parameters()])
    # AdamW moves each weight by about the learning rate (5e-4); the two runs agree to
    # float noise, 25x below that.
    moved = max(
        float((one - start).abs().max()) for start, one in zip(initial, weights[0], strict=True)
    )
    assert moved > 4e-4
    for one, cut_run in zip(*weights, strict=True):
        torch.testing.assert_close(one, cut_run, atol=2e-5, rtol=0)


def test_length_passes_sort_each_side_and_keep_queries_apart() -> None:
    # Three queries (token counts 9, 3, 5) and five documents.
    passes = length_passes([9, 3, 5, 40, 12, 80, 12, 7], 3, 2)
    assert passes == [[1, 2], [0], [7, 4], [6, 3], [5]]
    assert length_passes([9, 3, 5, 40, 12], 3, None) == [[1, 2, 0], [4, 3]]
    assert length_passes([4, 2], 2, None) == [[1, 0]]  # no documents: no empty pass


def test_resume_takes_the_same_next_steps(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    settings = {"max_steps": 4, "save_every": 2, "chunk_size": 6}  # dropout on, GradCache on
    straight = Trainer(config(tiny_encoder, title_pairs, tmp_path / "a", **settings))
    straight.train()
    assert [p.name for p in checkpoints(tmp_path / "a")] == ["step-000002", "step-000004"]

    # A run that stopped after step 2: only its checkpoint survives.
    step2 = Path(CHECKPOINTS) / "step-000002"
    shutil.copytree(tmp_path / "a" / step2, tmp_path / "b" / step2)
    resumed = Trainer(config(tiny_encoder, title_pairs, tmp_path / "b", **settings))
    assert resumed.resume() == 2
    resumed.train()
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in straight.history[2:]]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_lora_on_a_decoder_saves_a_merged_last_token_model(
    tiny_model: Path, title_pairs: Path, tmp_path: Path
) -> None:
    settings = {"max_steps": 2, "lora": {"r": 4, "alpha": 8}, "batch_size": 4}
    trainer = Trainer(config(tiny_model, title_pairs, tmp_path / "run", **settings))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    assert 0 < trainable < total / 100
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    final = trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert not list(final.glob("adapter_*"))  # adapters are merged into the weights
    assert_sentence_transformers_agrees(final)


def test_too_little_data_and_unfinished_versions(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    from pipeline.config.errors import UserError

    with pytest.raises(UserError, match="fewer than one batch of 64"):
        Trainer(config(tiny_encoder, title_pairs, tmp_path / "r", batch_size=64))
    partial = tmp_path / ".v0002.partial"
    shutil.copytree(title_pairs, partial)
    (partial / "manifest.json").unlink()
    with pytest.raises(UserError, match="not a finished dataset version"):
        Trainer(config(tiny_encoder, partial, tmp_path / "r"))
    # A dataset folder stands for its newest finished version (v0001 here).
    trainer = Trainer(config(tiny_encoder, title_pairs.parent, tmp_path / "r"))
    assert len(trainer.examples) == 48


def test_train_command_refuses_to_overwrite_and_resumes(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    import yaml

    from tests.conftest import cli

    settings = {
        "model": str(tiny_encoder),
        "data": [str(title_pairs)],
        "output_dir": "run",  # relative to the config file
        "batch_size": 8,
        "max_steps": 4,
        "save_every": 2,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(settings))
    done = cli("train", path)
    assert done.exit_code == 0, done.output
    assert "trained 4 steps" in done.stdout and (tmp_path / "run" / "final").is_dir()
    done = cli("train", path)
    assert done.exit_code == 2 and "already holds a training run" in done.stderr
    done = cli("train", path, "--resume")
    assert done.exit_code == 0 and "already trained 4 of 4 steps" in done.stdout
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-000004")  # as if it stopped at 2
    done = cli("train", path, "--resume")
    assert done.exit_code == 0 and "resuming at step 2 of 4" in done.stdout
    log = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3, 4]  # no repeated steps
    settings["learning_rate"] = 1e-3
    path.write_text(yaml.safe_dump(settings))
    done = cli("train", path, "--resume")
    assert done.exit_code == 2 and "made with another config or data" in done.stderr
    path.write_text(yaml.safe_dump(settings | {"batch_size": 1, "lr": 1}))
    done = cli("train", path)
    assert done.exit_code == 2
    assert "unknown key 'lr'" in done.stderr and "'batch_size'" in done.stderr


def test_learning_rate_warms_up_then_decays(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    settings = config(tiny_encoder, title_pairs, tmp_path / "r", max_steps=10, warmup_ratio=0.2)
    factor = schedule(settings, 10)
    assert [round(factor(s), 4) for s in range(10)] == [
        0.3333,
        0.6667,
        1.0,
        0.875,
        0.75,
        0.625,
        0.5,
        0.375,
        0.25,
        0.125,
    ]
    cosine = schedule(settings.model_copy(update={"schedule": "cosine"}), 10)
    assert cosine(2) == 1.0 and cosine(6) == pytest.approx(0.5)


def test_bf16_autocast_and_mrl_train(tiny_encoder: Path, title_pairs: Path, tmp_path: Path) -> None:
    from pipeline.config.errors import UserError

    settings = {"max_steps": 2, "precision": "bf16", "loss": {"mrl_dims": [16, 32]}}
    trainer = Trainer(config(tiny_encoder, title_pairs, tmp_path / "r", **settings))
    trainer.train()
    assert all(np.isfinite(e["loss"]) for e in trainer.history)
    with pytest.raises(UserError, match=r"dims \[128\] exceed the model's dimension 64"):
        Trainer(config(tiny_encoder, title_pairs, tmp_path / "r2", loss={"mrl_dims": [128]}))


def test_merge_with_base_is_a_slerp_of_the_trained_and_the_base_model(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    from transformers import AutoModel

    from pipeline.embedding.merge import slerp

    settings = {"max_steps": 2, "merge_with_base": 0.3, "learning_rate": 3e-3}
    trainer = Trainer(config(tiny_encoder, title_pairs, tmp_path / "r", **settings))
    final = trainer.train()
    unmerged = tmp_path / "r" / "unmerged"
    assert final == tmp_path / "r" / "final" and unmerged.is_dir()
    paths = {"base": tiny_encoder, "trained": unmerged, "final": final}
    state = {name: AutoModel.from_pretrained(path).state_dict() for name, path in paths.items()}
    moved = 0
    for key, base in state["base"].items():
        trained = state["trained"][key]
        if not base.is_floating_point():
            continue
        # By hand: along the arc from the trained tensor, 30% of the way to the base's.
        x, y = trained.double().flatten(), base.double().flatten()
        omega = torch.arccos(torch.clamp(x @ y / (x.norm() * y.norm()), -1, 1))
        if omega > 1e-6:
            moved += 1
            hand = (torch.sin(0.7 * omega) * x + torch.sin(0.3 * omega) * y) / torch.sin(omega)
            torch.testing.assert_close(state["final"][key].double().flatten(), hand, atol=1e-6,
                                       rtol=1e-5)  # fmt: skip
        torch.testing.assert_close(state["final"][key], slerp(trained, base, 0.3))
    assert moved > 10  # training moved the weights the merge pulls back
    assert_sentence_transformers_agrees(final)  # the merged folder is a complete model


def test_margin_mse_trains_on_teacher_scores_and_needs_them(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    from pipeline.config.errors import UserError
    from pipeline.embedding.data import load_examples
    from pipeline.models.tiny_encoder import build_tiny_encoder

    scored = with_teacher_scores(title_pairs, tmp_path / "scored")
    assert load_examples([scored], 1)[0].teacher_scores == pytest.approx((0.9, 0.3))
    distill = {"info_nce": False, "distill": "margin_mse"}
    model = build_tiny_encoder(tmp_path / "no-dropout", seed=1, dropout=0.0)
    trainer = Trainer(config(model, scored, tmp_path / "d", learning_rate=1e-3, warmup_ratio=0,
                             loss=distill))  # fmt: skip
    batch = next(trainer.batches())
    losses = [trainer.train_step(batch) for _ in range(8)]
    # The student's margins (about 0 in a random encoder) move toward the teacher's 0.6.
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(UserError, match="the data has no teacher_scores"):
        Trainer(config(tiny_encoder, title_pairs, tmp_path / "n", loss=distill))
    with pytest.raises(ValueError, match="nothing to train on"):
        config(tiny_encoder, title_pairs, tmp_path / "x", loss={"info_nce": False})
    with pytest.raises(ValueError, match="merge_with_base"):
        config(tiny_encoder, title_pairs, tmp_path / "x", merge_with_base=1.5)


def with_teacher_scores(pairs: Path, out: Path) -> Path:
    """The pairs again, the teacher scoring every positive 0.9 and every negative 0.3."""
    from pipeline.embedding.data import load_examples, write_version

    return write_version(out, [
        {"query": e.query, "positive": e.positive, "negatives": list(e.negatives),
         "doc_id": str(i), "teacher_scores": [0.9, 0.3]}
        for i, e in enumerate(load_examples([pairs], 1))
    ])  # fmt: skip


def test_the_configured_losses_are_what_the_trainer_minimizes(
    title_pairs: Path, tmp_path: Path
) -> None:
    from pipeline.embedding.losses import Batch, InfoNCE
    from pipeline.embedding.model import query_text
    from pipeline.embedding.trainer import document_column
    from pipeline.models.tiny_encoder import build_tiny_encoder

    model = build_tiny_encoder(tmp_path / "no-dropout", seed=1, dropout=0.0)
    losses = [{"name": "info_nce", "temperature": 0.1, "doc_doc": False}]
    trainer = Trainer(config(model, title_pairs, tmp_path / "r", losses=losses, pass_size=None))
    assert [type(term) for term in trainer.objective.terms] == [InfoNCE]
    batch = next(trainer.batches())
    # The step's vectors embedded here, one pass a side, and the module called on them.
    queries = [query_text(e.query, e.instruction) for e in batch]
    documents, owners = document_column(batch)
    with torch.no_grad():
        vectors = Batch(
            trainer._embed(queries), trainer._embed(documents), torch.tensor(owners), documents,
            queries,
        )  # fmt: skip
    direct = float(InfoNCE(temperature=0.1, doc_doc=False)(vectors))
    assert trainer.train_step(batch) == pytest.approx(direct, rel=1e-5)
    assert float(InfoNCE()(vectors)) != pytest.approx(direct, rel=1e-2)  # the settings count


def test_a_losses_list_trains_exactly_as_the_loss_section_it_spells_out(
    tiny_encoder: Path, title_pairs: Path, tmp_path: Path
) -> None:
    scored = with_teacher_scores(title_pairs, tmp_path / "scored")
    section = {"distill": "margin_mse", "distill_weight": 0.5, "mrl_dims": [16],
               "in_batch": False, "temperature": 0.1}  # fmt: skip
    losses = [
        {"name": "matryoshka", "dims": [16],
         "loss": {"name": "info_nce", "in_batch": False, "temperature": 0.1}},
        {"name": "margin_mse", "weight": 0.5, "temperature": 0.1},
    ]  # fmt: skip
    runs = []
    for name, settings in (("section", {"loss": section}), ("list", {"losses": losses})):
        trainer = Trainer(config(tiny_encoder, scored, tmp_path / name, chunk_size=6, **settings))
        step_losses = [trainer.train_step(batch) for batch in islice(trainer.batches(), 2)]
        runs.append((step_losses, list(trainer.model.parameters())))
    (section_losses, section_weights), (list_losses, list_weights) = runs
    assert section_losses == list_losses  # dropout and GradCache on: still the same floats
    for a, b in zip(section_weights, list_weights, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
