"""The stages of a generation job. Each takes a list of candidates and returns the ones
that go on plus the rejects, so the executor is a plain loop over a list of stages."""

import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.generator import StageSampling
from pipeline.config.job import JobConfig
from pipeline.dataset.records import Candidate, Reject, pair_id
from pipeline.generation.backends.base import Generator, OnDone, Request, Result
from pipeline.generation.parse import ParseFailure, parse_result
from pipeline.prompts.library import PromptLibrary, Stage, TaskSpec, schema_for
from pipeline.quality.minimal import words

# Which candidate field each stage output key fills in.
OUTPUT_FIELDS = {
    "character": "persona",
    "question_type": "question_type",
    "difficulty": "difficulty",
}

# A stage takes candidates and a callback it calls as candidates are done with it.
StageFn = Callable[[list[Candidate], OnDone], tuple[list[Candidate], list[Reject]]]


@dataclass
class TokenCount:
    """Tokens processed by the generator, for the throughput and cost report, in all and
    per stage name (where prompt tokens go)."""

    prompt: int = 0
    cached: int = 0  # prompt tokens the engine's prefix cache served
    completion: int = 0
    stages: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, stage: str, result: Result) -> None:
        self.prompt += result.prompt_tokens
        self.cached += result.cached_tokens
        self.completion += result.completion_tokens
        counts = self.stages.setdefault(stage, dict.fromkeys(("requests", "prompt", "cached"), 0))
        counts["requests"] += 1
        counts["prompt"] += result.prompt_tokens
        counts["cached"] += result.cached_tokens

    def merge(self, other: "TokenCount") -> None:
        """Add another engine's counts (a Ray job's actors report theirs per batch)."""
        self.prompt += other.prompt
        self.cached += other.cached
        self.completion += other.completion
        for stage, counts in other.stages.items():
            mine = self.stages.setdefault(stage, dict.fromkeys(counts, 0))
            for key, value in counts.items():
                mine[key] += value

    @property
    def uncached(self) -> int:
        """Prompt tokens the engine had to compute (prefill is most of a CPU job's time)."""
        return self.prompt - self.cached


def variables(candidate: Candidate, library: PromptLibrary) -> dict[str, Any]:
    """Everything a template may use: the plan, then every earlier stage's outputs. The
    passage is a variable, never template source."""
    return {
        **candidate.outputs,
        "passage": candidate.doc.text,
        "title": candidate.doc.title or "",
        "passage_language": library.language_name(candidate.doc.language),
        "personas": candidate.personas,
        "character": candidate.persona,
        "question_type": candidate.question_type,
        "difficulty": candidate.difficulty,
        "clarity": candidate.clarity,
        "query_words": candidate.query_words,
        "query_language": library.language_name(candidate.query_language),
    }


def enum_values(candidate: Candidate) -> dict[str, list[str] | None]:
    """Per-request enum choices for stage schemas: the candidate personas, and the planned
    question type and difficulty when the job draws them (None: the schema's own list)."""
    return {
        "personas": candidate.personas,
        "question_types": [candidate.question_type] if candidate.question_type else None,
        "difficulties": [candidate.difficulty] if candidate.difficulty else None,
    }


def stage_sampling(stage: Stage, config: JobConfig) -> StageSampling:
    """The job's sampling for a stage name, else the defaults with the stage's max_tokens."""
    return config.sampling.get(stage.name) or StageSampling(max_tokens=stage.max_tokens)


def generation_stage(
    index: int, library: PromptLibrary, generator: Generator, config: JobConfig, tokens: TokenCount
) -> StageFn:
    """Stage `index` of each candidate's task family: render, generate, parse.

    Families may have different stage lists: a candidate whose family has no stage at this
    position passes through. Requests are grouped by stage (each stage has its own
    sampling), so each group still reaches the engine as one batch. At its family's last
    stage a plan draws its `samples` answers, each a candidate of its own (the checks keep
    the first that passes them all), and its outputs become the pair (`finish`).
    """

    def run(candidates: list[Candidate], on_done: OnDone) -> tuple[list[Candidate], list[Reject]]:
        groups: dict[tuple[str, str, int], list[Candidate]] = defaultdict(list)
        passing: list[Candidate] = []
        for candidate in candidates:
            stages = library.task(candidate.task).stages
            if index < len(stages):
                groups[(candidate.task, stages[index].name, candidate.samples)].append(candidate)
            else:
                passing.append(candidate)
        on_done(len(passing))
        kept, rejects = list(passing), []
        for (task, _, _), members in groups.items():
            spec = library.task(task)
            stage = spec.stages[index]
            done, failed = _generate(stage, members, library, generator, config, tokens, on_done)
            if index == len(spec.stages) - 1:
                done = [finish(c, spec) for c in done]
            kept.extend(done)
            rejects.extend(failed)
        order = {c.plan_key: i for i, c in enumerate(candidates)}
        # Later stages see the batch in corpus order, a plan's samples in sample order.
        kept.sort(key=lambda c: (order[c.plan_key], c.sample))
        return kept, rejects

    return run


def _generate(
    stage: Stage,
    candidates: list[Candidate],
    library: PromptLibrary,
    generator: Generator,
    config: JobConfig,
    tokens: TokenCount,
    on_done: OnDone,
) -> tuple[list[Candidate], list[Reject]]:
    spec = library.task(candidates[0].task)
    shared = config.prompt_layout == "shared" and spec.shares_lead
    if shared and stage is not spec.stages[0]:
        # Last computed, first asked: a batch whose first stage outgrew the KV cache still
        # finds its most recent passages cached (vLLM evicts the least recently used).
        candidates = candidates[::-1]
    # At a family's last stage each plan draws its `samples` answers: the same messages,
    # asked one after another, so the engine computes the prompt once.
    samples = candidates[0].samples if stage is spec.stages[-1] else 1
    answering, requests = [], []
    for c in candidates:
        messages = (
            library.render_shared(spec, stage, variables(c, library))
            if shared
            else library.render(stage, variables(c, library))
        )
        schema = schema_for(stage, enum_values(c))
        for sample in range(samples):
            answering.append(c.another_sample(sample) if sample else c)
            requests.append(Request(messages=messages, schema=schema, sample=sample))
    sampling = stage_sampling(stage, config)
    results = generator.generate(requests, sampling, per_plan(on_done, samples))
    kept, rejects = [], []
    for candidate, request, result in zip(answering, requests, results, strict=True):
        tokens.add(stage.name, result)
        try:
            value = parse_result(result, request.schema)
        except ParseFailure as failure:
            rejects.append(
                Reject(
                    candidate.doc.doc_id,
                    candidate.task,
                    stage.name,
                    failure.reason,
                    failure.detail,
                    result.text,
                )
            )
            continue
        for key, text in value.items():
            if isinstance(text, str):
                candidate.outputs[key] = text.strip()
        for key, name in OUTPUT_FIELDS.items():
            if key in candidate.outputs:
                setattr(candidate, name, candidate.outputs[key])
        kept.append(candidate)
    return kept, rejects


def per_plan(on_done: OnDone, samples: int) -> OnDone:
    """`on_done` counting plans where the engine counts requests (`samples` per plan)."""
    if samples == 1:
        return on_done
    finished = [0]

    def count(n: int) -> None:
        before = finished[0] // samples
        finished[0] += n
        on_done(finished[0] // samples - before)

    return count


def finish(candidate: Candidate, spec: TaskSpec) -> Candidate:
    """Fill the pair's fields from the family's record mapping."""
    record = spec.record

    def source(name: str) -> str:
        if name == "passage":
            return candidate.doc.text
        if name == "title":
            return candidate.doc.title or ""
        return candidate.outputs.get(name, "")

    candidate.query = source(record.query)
    candidate.positive = None if record.positive == "passage" else source(record.positive)
    candidate.negative = source(record.negative) if record.negative else None
    if record.instruction and source(record.instruction):
        candidate.instruction = source(record.instruction)
    else:
        pick = random.Random(f"{candidate.doc.doc_id}:{spec.name}").randrange(
            len(spec.instructions)
        )
        candidate.instruction = spec.instructions[pick]
    return candidate


def example_queries(library: PromptLibrary, task: str) -> frozenset[tuple[str, ...]]:
    """The word tuples of every few-shot example query of a task's stages (the output key
    its record takes the query from)."""
    key = library.task(task).record.query
    return frozenset(
        tuple(words(example["output"][key]))
        for stage in library.task(task).stages
        for example in stage.examples
        if key in example["output"]
    )


def pair_instruction(library: PromptLibrary, candidate: Candidate) -> str:
    """The pair's instruction: written by the model where the family asks for one, else the
    family's canonical one."""
    return candidate.instruction or library.task(candidate.task).instruction


def pair_row(
    candidate: Candidate, library: PromptLibrary, config: JobConfig, model: str
) -> dict[str, Any]:
    """A kept candidate as a row of PAIR_SCHEMA."""
    spec = library.task(candidate.task)
    query = candidate.query or ""
    written = [candidate.negative] if candidate.negative else []
    return {
        "pair_id": pair_id(candidate.doc.doc_id, candidate.task, query),
        "query": query,
        "positive": candidate.positive_text,
        "negatives": written + candidate.negatives,
        "instruction": pair_instruction(library, candidate),
        "task": candidate.task,
        "language": candidate.query_language,
        "doc_language": candidate.doc.language,
        "persona": candidate.persona,
        "question_type": candidate.question_type,
        "difficulty": candidate.difficulty,
        "clarity": candidate.clarity,
        "query_words_requested": candidate.query_words,
        "doc_id": candidate.doc.doc_id,
        "title": candidate.doc.title,
        "model": model,
        "template_hash": spec.template_hash,
        "sampling": json.dumps(
            {s.name: stage_sampling(s, config).model_dump() for s in spec.stages}, sort_keys=True
        ),
        "seed": config.seed,
        "score_query_words": int(candidate.scores.get("query_words", 0)),
        "score_copy_ratio": float(candidate.scores.get("copy_ratio", 0.0)),
        "score_ngram_overlap": candidate.scores.get("ngram_overlap"),
        "score_language_confidence": candidate.scores.get("language_confidence"),
        "score_consistency": candidate.scores.get("consistency"),
        "score_round_trip_rank": _int_or_none(candidate.scores.get("round_trip_rank")),
        "score_llm_judge": candidate.scores.get("llm_judge"),
        "negative_scores": [None] * len(written) + candidate.negative_scores,
        "teacher_scores": candidate.teacher_scores,
    }


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)
