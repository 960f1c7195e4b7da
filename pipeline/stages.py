"""The stages of a generation job. Each takes a list of candidates and returns the ones
that go on plus the rejects, so the executor is a plain loop over a list of stages."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import JobConfig
from pipeline.filters import words
from pipeline.generate.backend import Generator, OnDone, Request
from pipeline.parse import ParseFailure, parse_result
from pipeline.prompts import PromptLibrary, Stage, schema_for
from pipeline.records import Candidate, Reject, pair_id

# Which candidate field each stage output key fills in.
OUTPUT_FIELDS = {
    "character": "persona",
    "question_type": "question_type",
    "difficulty": "difficulty",
    "query": "query",
}

# A stage takes candidates and a callback it calls as candidates are done with it.
StageFn = Callable[[list[Candidate], OnDone], tuple[list[Candidate], list[Reject]]]


@dataclass
class TokenCount:
    """Tokens processed by the generator, for the throughput and cost report."""

    prompt: int = 0
    cached: int = 0  # prompt tokens the engine's prefix cache served
    completion: int = 0

    @property
    def uncached(self) -> int:
        """Prompt tokens the engine had to compute (prefill is most of a CPU job's time)."""
        return self.prompt - self.cached


def variables(candidate: Candidate, library: PromptLibrary) -> dict[str, Any]:
    """Everything a template may use. The passage is a variable, never template source."""
    return {
        "passage": candidate.doc.text,
        "title": candidate.doc.title,
        "passage_language": library.language_name(candidate.doc.language),
        "personas": candidate.personas,
        "character": candidate.persona,
        "question_type": candidate.question_type,
        "difficulty": candidate.difficulty,
        "query_words": candidate.query_words,
        "query_language": library.language_name(candidate.query_language),
    }


def generation_stage(
    index: int, library: PromptLibrary, generator: Generator, config: JobConfig, tokens: TokenCount
) -> StageFn:
    """Stage `index` of each candidate's task: render, generate in one batch, parse."""

    def run(candidates: list[Candidate], on_done: OnDone) -> tuple[list[Candidate], list[Reject]]:
        stages: list[Stage] = [library.task(c.task).stages[index] for c in candidates]
        requests = [
            Request(
                messages=library.render(stage, variables(c, library)),
                schema=schema_for(stage, {"personas": c.personas}),
            )
            for c, stage in zip(candidates, stages, strict=True)
        ]
        sampling = getattr(config.sampling, stages[0].name) if stages else None
        results = generator.generate(requests, sampling, on_done) if stages else []
        kept, rejects = [], []
        for candidate, stage, request, result in zip(
            candidates, stages, requests, results, strict=True
        ):
            tokens.prompt += result.prompt_tokens
            tokens.cached += result.cached_tokens
            tokens.completion += result.completion_tokens
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
            for key, field in OUTPUT_FIELDS.items():
                if key in value:
                    setattr(candidate, field, value[key].strip())
            kept.append(candidate)
        return kept, rejects

    return run


def example_queries(library: PromptLibrary, task: str) -> frozenset[tuple[str, ...]]:
    """The word tuples of every few-shot example query of a task's stages."""
    return frozenset(
        tuple(words(example["output"]["query"]))
        for stage in library.task(task).stages
        for example in stage.examples
        if "query" in example["output"]
    )


def pair_row(
    candidate: Candidate, library: PromptLibrary, config: JobConfig, model: str
) -> dict[str, Any]:
    """A kept candidate as a row of PAIR_SCHEMA."""
    spec = library.task(candidate.task)
    query = candidate.query or ""
    return {
        "pair_id": pair_id(candidate.doc.doc_id, candidate.task, query),
        "query": query,
        "positive": candidate.doc.text,
        "negatives": candidate.negatives,
        "instruction": spec.instruction,
        "task": candidate.task,
        "language": candidate.query_language,
        "doc_language": candidate.doc.language,
        "persona": candidate.persona,
        "question_type": candidate.question_type,
        "difficulty": candidate.difficulty,
        "query_words_requested": candidate.query_words,
        "doc_id": candidate.doc.doc_id,
        "title": candidate.doc.title,
        "model": model,
        "template_hash": spec.template_hash,
        "sampling": json.dumps(config.sampling.model_dump(), sort_keys=True),
        "seed": config.seed,
        "score_query_words": int(candidate.scores.get("query_words", 0)),
        "score_copy_ratio": float(candidate.scores.get("copy_ratio", 0.0)),
        "score_ngram_overlap": candidate.scores.get("ngram_overlap"),
        "score_language_confidence": candidate.scores.get("language_confidence"),
        "score_consistency": candidate.scores.get("consistency"),
        "score_round_trip_rank": _int_or_none(candidate.scores.get("round_trip_rank")),
        "negative_scores": candidate.negative_scores,
    }


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)
