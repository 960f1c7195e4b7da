"""One query per text within a document: several plans of one document
(`queries_per_document`) can come back with the same query, and a repeated pair teaches
nothing new."""

from typing import TYPE_CHECKING

from pipeline.dataset.records import Candidate, Reject
from pipeline.dedup.text import text_key
from pipeline.quality.registry import Check, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context


def same_document(candidates: list[Candidate]) -> list[Reject | None]:
    """Several plans of one document (`queries_per_document`) can come back with the same
    query: the first stays. A document's candidates are planned into one batch, so looking
    within the batch is enough."""
    seen: set[tuple[str, str, str]] = set()
    verdicts: list[Reject | None] = []
    for c in candidates:
        key = (c.doc.doc_id, c.task, text_key(c.query or ""))
        verdicts.append(
            Reject(c.doc.doc_id, c.task, "same_document", "duplicate_in_document",
                   "another query of this document is the same", c.query)
            if key in seen
            else None
        )  # fmt: skip
        seen.add(key)
    return verdicts


@register(
    "same_document",
    order=200,
    enabled=lambda config: any(task.queries_per_document > 1 for task in config.tasks),
    every_family=True,
    reasons={
        "duplicate_in_document": "another query of the same document is the same "
        "(`queries_per_document` > 1)"
    },
)
def same_document_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """Every family; only jobs that plan several queries per document can repeat one."""
    return same_document
