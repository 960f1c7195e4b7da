"""Plan what to generate for each document: task family, query language, length, the
controlled draws (question type, difficulty, clarity) and the candidate personas.

Every choice comes from a random generator seeded by (job seed, document id), so a plan
does not depend on batch boundaries, corpus order or what ran before: a rerun plans the
same thing for the same document (and, as each request is seeded from its own content,
generates the same text for it).
"""

import random

from pipeline.config.job import JobConfig, TaskConfig, Weights
from pipeline.corpus.langid import detect_languages
from pipeline.dataset.records import Candidate, Document
from pipeline.prompts.library import PromptLibrary


def draw(rng: random.Random, weights: Weights) -> str | None:
    """One key drawn by weight; None for an empty distribution (the model chooses)."""
    if not weights:
        return None
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def query_language(
    rng: random.Random, doc: Document, config: JobConfig, cross_lingual: bool
) -> str:
    """The planned query language: the document's own with `match_document` chance when
    allowed; always another one for cross-lingual families (bitext) when there is one."""
    weights = config.languages.query
    if cross_lingual:
        others = {code: w for code, w in weights.items() if code != doc.language}
        return draw(rng, others or weights) or doc.language or "en"
    if doc.language in weights and rng.random() < config.languages.match_document:
        return doc.language
    return draw(rng, weights) or "en"


def plan(
    documents: list[Document],
    config: JobConfig,
    library: PromptLibrary,
    persona_choices: list[list[str]] | None = None,
) -> list[Candidate]:
    """Seeded Candidates per document (`queries_per_document` of its task, each its own
    plan). `persona_choices` gives each document's retrieved persona candidates; without
    it they are a seeded draw from the library."""
    unknown = [doc for doc in documents if doc.language is None]
    for doc, code in zip(unknown, detect_languages([d.text for d in unknown]), strict=True):
        doc.language = code
    weights = [task.weight for task in config.tasks]
    candidates = []
    for number, doc in enumerate(documents):
        rng = random.Random(f"{config.seed}:{doc.doc_id}")
        task: TaskConfig = rng.choices(config.tasks, weights=weights)[0]
        spec = library.task(task.type)
        first = query_language(rng, doc, config, spec.cross_lingual), rng.randint(*task.query_words)
        k = min(task.persona_candidates, len(library.personas))
        personas = (
            persona_choices[number][:k]
            if persona_choices is not None
            else rng.sample(library.personas, k)
        )
        for variant in range(task.queries_per_document):
            # Variant 0 is the plan of a one-query job (its cached generations stay valid);
            # later ones draw from their own generator and see the persona candidates
            # rotated, so their prompts, and so their per-request seeds, differ.
            suffix = f":{variant}" if variant else ""
            language, words = first
            if variant:
                own = random.Random(f"{config.seed}:{doc.doc_id}{suffix}")
                language = query_language(own, doc, config, spec.cross_lingual)
                words = own.randint(*task.query_words)
            drawn = random.Random(f"{config.seed}:{doc.doc_id}:mix{suffix}")
            turn = variant % len(personas)
            candidates.append(
                Candidate(
                    doc=doc,
                    task=task.type,
                    query_language=language,
                    query_words=words,
                    personas=personas[turn:] + personas[:turn],
                    question_type=draw(drawn, task.question_type),
                    difficulty=draw(drawn, task.difficulty),
                    clarity=draw(drawn, task.clarity),
                    plan=variant,
                    samples=task.samples,
                )
            )
    return candidates
