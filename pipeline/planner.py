"""Plan what to generate for each document: task, candidate personas, query language, length.

Every choice comes from a random generator seeded by (job seed, document id), so a plan
does not depend on batch boundaries, corpus order or what ran before: a rerun plans the
same thing for the same document (the engine's sampling is seeded once per engine, so the
generated text matches only when the batches do too).
"""

import random

from pipeline.config import JobConfig
from pipeline.langid import detect_languages
from pipeline.records import Candidate, Document


def plan(documents: list[Document], config: JobConfig, personas: list[str]) -> list[Candidate]:
    """One seeded Candidate per document."""
    unknown = [doc for doc in documents if doc.language is None]
    for doc, code in zip(unknown, detect_languages([d.text for d in unknown]), strict=True):
        doc.language = code
    weights = [task.weight for task in config.tasks]
    allowed = config.languages.query
    candidates = []
    for doc in documents:
        rng = random.Random(f"{config.seed}:{doc.doc_id}")
        task = rng.choices(config.tasks, weights=weights)[0]
        if doc.language in allowed and rng.random() < config.languages.match_document:
            language = doc.language
        else:
            language = rng.choice(allowed)
        candidates.append(
            Candidate(
                doc=doc,
                task=task.type,
                query_language=language,
                query_words=rng.randint(*task.query_words),
                personas=rng.sample(personas, min(task.persona_candidates, len(personas))),
            )
        )
    return candidates
