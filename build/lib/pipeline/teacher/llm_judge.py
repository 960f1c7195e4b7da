"""The LLM judge: the job's own generator asked, in Qwen3-Reranker's form, whether a text
meets a query under the pair's instruction; its score is P("yes") / (P("yes") + P("no"))
from the first answer token's log-probabilities.

It serves twice: as a teacher (`teacher.kind: llm`, scoring the positive and negatives of
the mining families) and as the check of every family (`filters.llm_judge`), the only one
that reads a classification label, an STS partner, a translation or a title against its
text. On a GPU the generator is a Qwen3 that can judge (or a Qwen3-Reranker served as
the generator); the demo's 135M model and the tests' random Qwen3 judge badly, but the
scores are computed the same way.
"""

import math
from collections.abc import Callable

from pipeline.config.generator import StageSampling
from pipeline.dataset.records import Candidate, Reject
from pipeline.generation.backends.base import Generator, Request, Result
from pipeline.quality.llm_judge import LlmJudgeFilter

# Qwen3-Reranker's system text, word for word (its model card).
SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
LABELS = ("yes", "no")
SAMPLING = StageSampling(temperature=0.0, top_p=1.0, top_k=-1, max_tokens=1)


def judge_request(instruction: str, query: str, document: str) -> Request:
    """One judgement; the texts are message content, never template source."""
    user = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    return Request(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        {},
        LABELS,
    )


def yes_probability(result: Result) -> float | None:
    """P(yes) renormalized over yes and no; None when the request failed or a label's
    log-probability is missing."""
    found = result.label_logprobs or {}
    if result.error is not None or any(label not in found for label in LABELS):
        return None
    return 1.0 / (1.0 + math.exp(found["no"] - found["yes"]))


def judge(generator: Generator, triples: list[tuple[str, str, str]]) -> list[float | None]:
    """P(yes) for each (instruction, query, document), in one batch."""
    requests = [judge_request(*triple) for triple in triples]
    return [yes_probability(r) for r in generator.generate(requests, SAMPLING)]


def judge_check(
    generator: Generator, config: LlmJudgeFilter, instruction_of: Callable[[Candidate], str]
) -> Callable[[list[Candidate]], list[Reject | None]]:
    """`filters.llm_judge`: the pair's query and positive judged under its instruction;
    below `min_score` (or unscorable) it is rejected, its score kept as `llm_judge`."""

    def run(candidates: list[Candidate]) -> list[Reject | None]:
        triples = [(instruction_of(c), c.query or "", c.positive_text) for c in candidates]
        verdicts: list[Reject | None] = []
        for c, score in zip(candidates, judge(generator, triples), strict=True):
            if score is None:
                reason, detail = "judge_unscored", "the judge request failed or gave no yes/no"
            elif score < config.min_score:
                reason, detail = "judge_says_no", f"P(yes) {score:.3f} < {config.min_score}"
            else:
                c.scores["llm_judge"] = score
                verdicts.append(None)
                continue
            verdicts.append(
                Reject(c.doc.doc_id, c.task, "llm_judge", reason, detail, c.query, score)
            )
        return verdicts

    return run
