"""The job configuration: one YAML file, validated by pydantic (loaded by config_base).

Unknown keys and bad values are errors that name the key and the file, so a typo never
silently falls back to a default. Relative paths are resolved against the config file's
folder, so a job runs the same from any working directory.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import Stemmer
from pydantic import Field, field_validator, model_validator

from pipeline.config.base import Strict, load_yaml_model
from pipeline.config.generator import GeneratorConfig, SamplingConfig
from pipeline.config.input import InputConfig
from pipeline.corpus.langid import identifiable
from pipeline.prompts.languages import check_language_names
from pipeline.quality.registry import FiltersConfig, embeds_filters

LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")


Weights = dict[str, float]


def _positive_weights(value: Weights) -> Weights:
    if any(weight < 0 for weight in value.values()) or (value and not sum(value.values()) > 0):
        raise ValueError("weights must be >= 0 with a positive sum")
    return value


class TaskConfig(Strict):
    """One task family to generate, its share of the job and the distributions its plan
    draws from. An empty question_type or difficulty leaves the choice to the model (the
    Qwen3 recipe's stage 1); weights make it a controlled draw the model must follow."""

    type: str = Field("retrieval", pattern=r"^[a-z0-9_]+$")
    weight: float = Field(1.0, gt=0)
    persona_candidates: int = Field(5, ge=1, le=20)
    query_words: tuple[int, int] = (3, 12)
    question_type: Weights = Field(default_factory=dict)
    difficulty: Weights = Field(default_factory=dict)
    clarity: Weights = Field(default_factory=lambda: {"clear": 1.0})
    queries_per_document: int = Field(
        1, ge=1, le=16, description="plans (and pairs) per document, deduplicated within it"
    )
    samples: int = Field(
        1,
        ge=1,
        le=8,
        description="answers drawn per plan at the family's last stage; the first that passes "
        "every check becomes the plan's pair (the prompt is computed once: the others are "
        "served from the prefix cache)",
    )

    @field_validator("query_words")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError("must be [min, max] with 1 <= min <= max")
        return value

    @field_validator("question_type", "difficulty", "clarity")
    @classmethod
    def _weights(cls, value: Weights) -> Weights:
        return _positive_weights(value)


class LanguagesConfig(Strict):
    """Which languages queries are written in: a list (equal weights) or code -> weight."""

    query: Weights = Field(default_factory=lambda: {"en": 1.0})
    match_document: float = Field(
        0.7, ge=0, le=1, description="chance a query is in its document's language, if allowed"
    )

    @field_validator("query", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return dict.fromkeys(value, 1.0) if isinstance(value, list) else value

    @field_validator("query")
    @classmethod
    def _codes(cls, value: Weights) -> Weights:
        if not value:
            raise ValueError("needs at least one language code")
        for code in value:
            if not LANGUAGE_CODE.match(code):
                raise ValueError(f"{code!r} is not an ISO 639-1 code such as 'en'")
        return _positive_weights(value)


class PersonasConfig(Strict):
    """Where personas come from and how each document's candidates are chosen."""

    bundled: bool = Field(True, description="include the bundled persona library")
    files: list[Path] = Field([], description="Persona Hub JSONL or a YAML list, added")
    select: Literal["retrieve", "random"] = Field(
        "retrieve", description="top-k by embedding similarity to the document, or a seeded draw"
    )


class NearDedup(Strict):
    """MinHash-LSH near-duplicate detection (rensa) over word shingles."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard of duplicates")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle: int = Field(2, ge=1, le=5, description="words per shingle")


class SemanticDedup(Strict):
    """Query-embedding cosine between a new query and every kept one."""

    enabled: bool = True
    threshold: float = Field(0.95, gt=0, le=1)


class DocumentDedupConfig(Strict):
    """Duplicate input documents yield redundant pairs: drop them before planning."""

    exact: bool = True
    near: bool = True


class DedupConfig(Strict):
    """Query and document dedup; kept queries of earlier versions count too."""

    exact: bool = True
    near: NearDedup = NearDedup()
    semantic: SemanticDedup = SemanticDedup()
    documents: DocumentDedupConfig = DocumentDedupConfig()


class NegativesConfig(Strict):
    """Hard-negative mining from the corpus embeddings, with a false-negative guard."""

    enabled: bool = True
    count: int = Field(3, ge=1, le=64, description="negatives per pair")
    rank_start: int = Field(
        2, ge=0, description="skip this many top candidates (the likeliest false negatives)"
    )
    rank_end: int = Field(30, ge=1, description="candidates come from ranks [rank_start, rank_end)")
    max_score_ratio: float = Field(
        0.95, gt=0, le=1, description="drop candidates scoring above this share of the positive"
    )
    margin: float = Field(
        0.0, ge=0, le=1, description="drop candidates within this margin below the positive"
    )
    ranked_by: Literal["embedder", "teacher"] = Field(
        "embedder",
        description="whose order the rank window reads: teacher re-ranks the embedder's top 100",
    )

    @model_validator(mode="after")
    def _window(self) -> "NegativesConfig":
        if self.rank_end <= self.rank_start:
            raise ValueError("rank_end must be larger than rank_start")
        return self


class TeacherConfig(Strict):
    """A model stronger than the student scores each kept pair (see pipeline.teacher)."""

    kind: Literal["none", "fused", "cross_encoder", "llm"] = "none"
    model: str | None = Field(None, description="a CrossEncoder folder (kind: cross_encoder)")
    embedder_weight: float = Field(0.7, ge=0, description="fused: the job's embedder's weight")
    bm25_weight: float = Field(0.3, ge=0, description="fused: BM25's weight")
    bm25_stemmer: str = Field(
        "english", description="fused: BM25's Snowball stemmer (PyStemmer's names), or none"
    )
    scale: Literal["z", "rank"] = Field(
        "z", description="fused: how its mix returns to the embedder's cosine scale"
    )
    feedback_docs: int = Field(0, ge=0, description="fused: its top k move the query (0: off)")
    feedback_weight: float = Field(0.5, gt=0, description="fused: the top k's mean's weight")
    batch_size: int = Field(32, gt=0)
    on_preferred_negative: Literal["keep", "drop_negative", "drop_pair", "relabel"] = Field(
        "drop_negative", description="what a negative the teacher scores above the positive does"
    )

    @model_validator(mode="after")
    def _complete(self) -> "TeacherConfig":
        if self.kind == "cross_encoder" and not self.model:
            raise ValueError("kind cross_encoder needs teacher.model (a CrossEncoder folder)")
        if self.kind != "cross_encoder" and self.model:
            raise ValueError(f"teacher.model is only for kind cross_encoder, not {self.kind}")
        if self.kind != "fused" and (self.scale != "z" or self.feedback_docs):
            raise ValueError(f"teacher.scale and feedback are for kind fused, not {self.kind}")
        if self.kind == "fused" and self.embedder_weight + self.bm25_weight <= 0:
            raise ValueError("teacher weights must have a positive sum")
        stemmers = Stemmer.algorithms()
        if self.bm25_stemmer != "none" and self.bm25_stemmer not in stemmers:
            named = ", ".join(stemmers)
            raise ValueError(f"teacher.bm25_stemmer {self.bm25_stemmer!r}: none or one of {named}")
        return self


class EmbedderConfig(Strict):
    """The embedder of consistency, round trip, semantic dedup and mining (one per job)."""

    model: str = Field(
        "all-MiniLM-L6-v2", description="a sentence-transformers folder, or all-MiniLM-L6-v2"
    )
    batch_size: int = Field(64, gt=0)
    backend: Literal["torch", "vllm"] = "torch"
    exact_below: int = Field(
        100_000,
        ge=0,
        description="a corpus this large or larger is searched through an HNSW graph and "
        "the fused teacher (and the adapter's lesson) scores each query's candidates, not "
        "every document; kept queries this many or more are searched for semantic "
        "duplicates through a graph too",
    )


class OutputConfig(Strict):
    """Where versions of the dataset are written."""

    dir: Path = Path("out")
    shard_size: int = Field(10000, gt=0, description="rows per Parquet shard")
    license: str | None = Field(
        None, description="the dataset's license in its card (a Hub license id: cc-by-4.0)"
    )
    checkpoint_minutes: float = Field(
        15,
        ge=0,
        description="minutes between saves of a run's progress, from which a killed run goes "
        "on (0: after every batch)",
    )


class RayConfig(Strict):
    """The Ray cluster of `executor: ray` and the engine actors placed on it."""

    address: str | None = Field(
        None, description="host:port of a running cluster, or auto; none: start one locally"
    )
    engines: int = Field(1, ge=1, le=4096, description="vLLM engine actors")
    cpus_per_engine: float = Field(1, gt=0)
    gpus_per_engine: float = Field(0, ge=0, description="0 on CPU machines; else >= tensor size")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one engine spans")
    batch_size: int | None = Field(
        None, gt=0, description="documents per engine task; none: input.batch_size"
    )
    in_flight: int = Field(2, ge=1, le=64, description="batches queued per engine")

    @model_validator(mode="after")
    def _gpus_cover_the_tensor(self) -> "RayConfig":
        if self.tensor_parallel_size > 1 and self.gpus_per_engine < self.tensor_parallel_size:
            raise ValueError("ray.gpus_per_engine must be at least ray.tensor_parallel_size")
        return self


class JobConfig(Strict):
    """A whole generation job."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    input: InputConfig
    tasks: list[TaskConfig] = Field([TaskConfig()], min_length=1)
    languages: LanguagesConfig = LanguagesConfig()
    personas: PersonasConfig = PersonasConfig()
    prompts_dir: Path | None = None
    sampling: SamplingConfig = Field(default_factory=dict)
    # separate: each stage's own prompt; shared: the stages of a family with a `lead` open
    # every request with one head (all stages' instructions and examples, then the passage),
    # so a later stage computes only its own tail: half the prompt cost per plan, but
    # SmolLM2-135M keeps fewer of its queries on topic in it (bench/prompt_cost.py).
    prompt_layout: Literal["separate", "shared"] = "separate"
    generator: GeneratorConfig
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    dedup: DedupConfig = DedupConfig()
    negatives: NegativesConfig = NegativesConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    teacher: TeacherConfig = TeacherConfig()
    output: OutputConfig = OutputConfig()
    # What drives the job: this process (local), or engine actors on a Ray cluster. The
    # dataset does not depend on it, so neither does the job's fingerprint.
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = RayConfig()

    @field_validator("name")
    @classmethod
    def _inside_the_output_folder(cls, value: str) -> str:
        # The pattern keeps path separators out; these two would name output.dir itself
        # or its parent, where versions and the lock of other datasets live.
        if value in (".", ".."):
            raise ValueError(f"{value!r} names no folder of its own (versions: output.dir/NAME)")
        return value

    @model_validator(mode="after")
    def _languages_are_identifiable(self) -> "JobConfig":
        # The language filter asks lingua about every query language: one it does not know
        # would crash the job at its first batch, after the engine has loaded.
        if self.filters.language.enabled:
            for code in self.languages.query:
                if not identifiable(code):
                    raise ValueError(
                        f"languages.query {code!r}: lingua cannot identify it, so "
                        "filters.language cannot check its queries (drop the code or set "
                        "filters.language.enabled: false)"
                    )
        return self

    @model_validator(mode="after")
    def _filters_admit_requested_lengths(self) -> "JobConfig":
        if self.filters.min_query_words > self.filters.max_query_words:
            raise ValueError("filters.min_query_words is larger than filters.max_query_words")
        longest = max(task.query_words[1] for task in self.tasks)
        if longest > self.filters.max_query_words:
            raise ValueError(
                f"tasks ask for queries of up to {longest} words but "
                f"filters.max_query_words is {self.filters.max_query_words}"
            )
        if self.filters.round_trip.judge == "teacher" and self.teacher.kind == "none":
            raise ValueError("filters.round_trip.judge is teacher but teacher.kind is none")
        if self.negatives.ranked_by == "teacher" and self.teacher.kind == "none":
            raise ValueError("negatives.ranked_by is teacher but teacher.kind is none")
        if self.executor == "ray" and self.generator.backend != "vllm":
            raise ValueError("executor ray runs its own engines: generator.backend must be vllm")
        return self

    def fingerprint(self) -> str:
        """A stable hash of the resolved config, recorded in the manifest; what runs the job
        and how often it saves its progress change nothing it makes, so they are left out."""
        left_out = {"executor": True, "ray": True, "output": {"checkpoint_minutes": True}}
        blob = json.dumps(self.model_dump(mode="json", exclude=left_out), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# A check registered after this point (a test's, a plugin's) joins `filters:` too.
embeds_filters(JobConfig, "filters")


def resolve_path(base: Path, path: Path) -> Path:
    """`path` with ~ expanded, resolved against `base` when relative."""
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve(base: Path, path: Path | None) -> Path | None:
    return None if path is None else resolve_path(base, path)


def resolve_model(base: Path, model: str) -> str:
    """A local model path resolved next to the config; a hub id left as it is."""
    if model.startswith((".", "/", "~")) or (base / model).exists():
        return str(resolve_path(base, Path(model)))
    return model


def load_config(path: Path) -> JobConfig:
    """Read and validate a job YAML file; relative paths are resolved next to it."""
    config = load_yaml_model(path, JobConfig)
    base = path.resolve().parent
    config.input.path = resolve_path(base, config.input.path)
    config.personas.files = [resolve_path(base, path) for path in config.personas.files]
    contamination = config.filters.decontamination
    contamination.files = [resolve_path(base, path) for path in contamination.files]
    config.prompts_dir = _resolve(base, config.prompts_dir)
    check_language_names(list(config.languages.query), config.prompts_dir, path)
    config.output.dir = resolve_path(base, config.output.dir)
    config.generator.model = resolve_model(base, config.generator.model)
    config.embedder.model = resolve_model(base, config.embedder.model)
    if config.teacher.model:
        config.teacher.model = resolve_model(base, config.teacher.model)
    return config
