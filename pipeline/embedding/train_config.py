"""The training configuration: one YAML file, validated like the job config."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.config.base import Strict
from pipeline.config.job import load_yaml_model, resolve_model, resolve_path


class InfoNCEConfig(Strict):
    """`name: info_nce`: the contrastive loss (pipeline.embedding.losses.info_nce)."""

    name: Literal["info_nce"] = "info_nce"
    weight: float = Field(1.0, gt=0, description="its factor in the summed objective")
    temperature: float = Field(0.05, gt=0)
    in_batch: bool = Field(True, description="the other queries' documents are negatives")
    query_query: bool = Field(True, description="the other queries are negatives")
    doc_doc: bool = Field(True, description="the other positives are negatives of a positive")
    margin: float = Field(0.1, description="mask negatives scoring above positive + margin")


class MarginMSEConfig(Strict):
    """`name: margin_mse`: GPL's distillation from the data's teacher_scores
    (pipeline.embedding.losses.margin_mse)."""

    name: Literal["margin_mse"] = "margin_mse"
    weight: float = Field(1.0, gt=0, description="its factor in the summed objective")
    temperature: float = Field(0.05, gt=0, description="both margins are divided by it")


# What a wrapper may wrap: any loss but another wrapper.
WrappedSpec = Annotated[InfoNCEConfig | MarginMSEConfig, Field(discriminator="name")]


class MatryoshkaConfig(Strict):
    """`name: matryoshka`: its inner `loss` at full size and on each prefix of `dims`
    components, averaged (pipeline.embedding.losses.matryoshka)."""

    name: Literal["matryoshka"] = "matryoshka"
    weight: float = Field(1.0, gt=0, description="its factor in the summed objective")
    dims: list[Annotated[int, Field(gt=0)]] = Field(min_length=1, description="prefix sizes")
    loss: WrappedSpec

    @model_validator(mode="after")
    def _one_weight(self) -> "MatryoshkaConfig":
        # One place for the factor, so a reader never has to multiply two.
        if "weight" in self.loss.model_fields_set:
            raise ValueError("matryoshka's inner loss takes no weight; weight the matryoshka")
        return self


# One entry of `losses`; `name` picks the loss (the registry in pipeline.embedding.losses).
LossSpec = Annotated[
    InfoNCEConfig | MarginMSEConfig | MatryoshkaConfig, Field(discriminator="name")
]


class LossConfig(Strict):
    """The older shorthand for the losses: InfoNCE (with Matryoshka dims) plus optional
    distillation. It stands for a `losses` list (`legacy_losses`) and is kept so that
    configs written with it train exactly as before."""

    info_nce: bool = Field(True, description="the contrastive term; off: distillation alone")
    distill: Literal["none", "margin_mse"] = Field(
        "none", description="margin_mse: regress the student's margins on the teacher's (GPL)"
    )
    distill_weight: float = Field(1.0, gt=0, description="weight of the distillation term")
    temperature: float = Field(0.05, gt=0)
    in_batch: bool = True
    query_query: bool = True
    doc_doc: bool = True
    margin: float = Field(0.1, description="mask negatives scoring above positive + margin")
    mrl_dims: list[int] = Field(default_factory=list, description="Matryoshka prefix sizes")


def legacy_losses(loss: LossConfig) -> list[LossSpec]:
    """The `losses` list a `loss` section stands for: InfoNCE (in a Matryoshka wrapper when
    it has mrl_dims) then margin-MSE, in the order the older trainer summed them."""
    specs: list[LossSpec] = []
    if loss.info_nce:
        terms = {"temperature", "in_batch", "query_query", "doc_doc", "margin"}
        info_nce = InfoNCEConfig(**loss.model_dump(include=terms))
        if loss.mrl_dims:
            specs.append(MatryoshkaConfig(dims=loss.mrl_dims, loss=info_nce))
        else:
            specs.append(info_nce)
    if loss.distill == "margin_mse":
        specs.append(MarginMSEConfig(weight=loss.distill_weight, temperature=loss.temperature))
    return specs


class LoraConfig(Strict):
    """LoRA adapters instead of full fine-tuning; merged into the saved model."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EncoderFit(Strict):
    """The whole encoder fitted to the lesson (adapter `fit: encoder`): the queries in
    batches, each against every corpus document, for a number of epochs."""

    learning_rate: float = Field(1e-4, gt=0)
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(32, gt=1, description="queries per step")


class AdapterConfig(Strict):
    """After training (and the merge), the model is fitted to the job's fused teacher over
    the job's whole corpus (pipeline.adapt): a few margins per query cannot teach what the
    teacher's ranking of every document can. `fit: linear` learns a map after pooling (the
    settings below); `fit: encoder` fine-tunes every weight on the same lesson (`encoder`)."""

    job: Path = Field(description="the job config whose corpus and fused teacher it learns from")
    fit: Literal["linear", "encoder"] | None = Field(
        None,
        description="what is fitted: a map after pooling, or the whole encoder; none: linear "
        "(with select: the fits tried are select.fits)",
    )
    encoder: EncoderFit = Field(default_factory=EncoderFit)
    reg: float = Field(0.03, gt=0, description="weight of ||W - I||^2: how far W may leave I")
    steps: int = Field(300, gt=0, description="of the linear fit")
    learning_rate: float = Field(1e-3, gt=0, description="of the linear fit")
    temperature: float = Field(0.05, gt=0, description="of both softmaxes over the corpus")
    batch_size: int = Field(
        1024, gt=0, description="linear fit: queries per step, each against every doc"
    )
    crops: int = Field(
        3, ge=0, description="sentences per document used as queries beside the generated ones"
    )
    whole_table_gib: float = Field(
        2.0,
        ge=0,
        description="the teacher's scores of every document for every query are kept where "
        "they fit in this many GiB; above it each query keeps `top` + `sampled` documents",
    )
    top: int = Field(
        256, gt=0, description="documents per query taught from the teacher's ranking (its best)"
    )
    sampled: int = Field(
        64, ge=0, description="documents per query drawn at random from the rest of the corpus"
    )
    queries: list[Path] = Field(
        default_factory=list,
        description="query logs (JSONL with text or query, or a BEIR folder): unlabelled queries "
        "the collection's users wrote, taught the teacher's ranking beside the generated ones",
    )


FitKind = Literal["none", "linear", "encoder"]


class SelectConfig(Strict):
    """Train once, then build a candidate per merge share and adapter fit, measure each and
    the base model on a held-out split of the pairs' documents (never on test queries), and
    save the best as `final/`, or the base where no candidate beats it
    (pipeline.selection)."""

    held_out: float = Field(
        0.2, gt=0, lt=1, description="share of the pairs' documents held out of training"
    )
    merge_with_base: list[Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=lambda: [0.5],
        min_length=1,
        description="the base model's shares in the slerp, one candidate each; 0: unmerged",
    )
    fits: list[FitKind] = Field(
        default_factory=lambda: ["none", "encoder"],
        min_length=1,
        description="adapter fits tried on each merged model; linear and encoder need the "
        "`adapter` section (its job's corpus and teacher)",
    )
    metric: Literal["ndcg@10", "mrr@10"] = Field(
        "ndcg@10", description="what the candidates are ranked by on the split"
    )
    min_gain: float = Field(
        0.0, ge=0, description="a candidate must beat the base model by more than this"
    )


class TrainConfig(Strict):
    """A training run."""

    model: str
    data: list[Path] = Field(min_length=1, description="dataset version folders")
    versions: Literal["latest", "all"] = Field(
        "latest", description="for a dataset folder in data: its newest version, or all of them"
    )
    output_dir: Path
    pooling: Literal["mean", "lasttoken"] | None = None
    max_length: int = Field(256, gt=0)
    batch_size: int = Field(32, gt=1, description="queries per step, all in-batch negatives")
    chunk_size: int | None = Field(
        None, gt=0, description="texts per GradCache chunk (the memory saver); none: one graph"
    )
    pass_size: int | None = Field(
        16,
        gt=0,
        description="texts per forward pass within one graph, sorted by length so each pass "
        "pads to texts of about its own length; none: one pass per side",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast forward")
    hard_negatives: int = Field(3, ge=0, description="hard negatives used per pair, at most")
    instructions: Literal["auto", "task", "none"] = Field(
        "auto",
        description="queries carry the task instruction (task) or not (none); auto: as the "
        "base model was trained (see pipeline.embedding.instructions)",
    )
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["linear", "cosine"] = "linear"
    max_grad_norm: float = Field(1.0, gt=0)
    losses: Annotated[list[LossSpec], Field(min_length=1)] | None = Field(
        None,
        description="the losses, each {name, weight, settings}, summed with their weights; "
        "none: the ones the `loss` section stands for",
    )
    loss: LossConfig = LossConfig()
    lora: LoraConfig | None = None
    save_every: int = Field(
        0, ge=0, description="checkpoint every N steps too (one is always written at the end)"
    )
    keep_checkpoints: int = Field(3, gt=0)
    merge_with_base: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="the base model's share in a slerp of the trained model with it; the final "
        "model is the merged one, the trained one is kept in `unmerged`",
    )
    adapter: AdapterConfig | None = Field(
        None,
        description="fit the adapter after training (and the merge): a map after pooling or the "
        "whole encoder, taught the fused teacher's ranking of the corpus; the model before "
        "it is kept in `unadapted`",
    )
    select: SelectConfig | None = Field(
        None,
        description="choose the final model among candidates on a held-out split of the "
        "data, keeping the base model when none beats it; replaces merge_with_base and "
        "adapter.fit, whose choices it makes",
    )
    seed: int = 0

    def loss_specs(self) -> list[LossSpec]:
        """The losses to train on: `losses` as written, or those the `loss` section means."""
        return self.losses if self.losses is not None else legacy_losses(self.loss)

    @model_validator(mode="after")
    def _losses_valid(self) -> "TrainConfig":
        if self.losses is not None and "loss" in self.model_fields_set:
            raise ValueError("give `losses` or the older `loss` section, not both")
        if any(d <= 0 for d in self.loss.mrl_dims):
            raise ValueError("loss.mrl_dims must be positive sizes")
        if not self.loss.info_nce and self.loss.distill == "none":
            raise ValueError("loss.info_nce is off and loss.distill is none: nothing to train on")
        if self.select is not None:
            self._check_select(self.select)
        return self

    def _check_select(self, select: SelectConfig) -> None:
        """`select` makes the merge and fit choices, so it refuses them made by hand."""
        if self.merge_with_base is not None:
            raise ValueError("with select, give the shares to try in select.merge_with_base")
        if self.adapter is not None and self.adapter.fit is not None:
            raise ValueError("with select, give the fits to try in select.fits, not adapter.fit")
        fitted = sorted(set(select.fits) - {"none"})
        if fitted and self.adapter is None:
            raise ValueError(
                f"select.fits {fitted} need an adapter section (its job's corpus and teacher)"
            )


def load_train_config(path: Path) -> TrainConfig:
    """Read and validate a training YAML; relative paths are resolved next to it."""
    config = load_yaml_model(path, TrainConfig)
    base = path.resolve().parent
    config.data = [resolve_path(base, p) for p in config.data]
    config.output_dir = resolve_path(base, config.output_dir)
    config.model = resolve_model(base, config.model)
    if config.adapter is not None:
        config.adapter.job = resolve_path(base, config.adapter.job)
        config.adapter.queries = [resolve_path(base, p) for p in config.adapter.queries]
    return config
