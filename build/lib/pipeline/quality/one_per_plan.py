"""One pair per plan: with `samples` > 1 a plan is generated several times, so that a plan
whose first answer fails a filter can still yield a pair; the first sample that passed
every filter becomes the pair, the others are spares."""

from typing import TYPE_CHECKING

from pipeline.dataset.records import Candidate, Reject
from pipeline.quality.registry import Check, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context


def one_per_plan(candidates: list[Candidate]) -> list[Reject | None]:
    """Of a plan's samples that passed every filter, the first (in sample order) becomes
    the pair; the others are spares. A plan's samples are generated into one batch."""
    kept: dict[tuple[str, str, int], int] = {}
    verdicts: list[Reject | None] = []
    for c in candidates:
        first = kept.setdefault(c.plan_key, c.sample)
        verdicts.append(
            None
            if first == c.sample
            else Reject(c.doc.doc_id, c.task, "one_per_plan", "spare_sample",
                        f"sample {first} of this plan passed first", c.query)
        )  # fmt: skip
    return verdicts


@register(
    "one_per_plan",
    order=1000,  # last: every check before it decides which samples passed
    enabled=lambda config: any(task.samples > 1 for task in config.tasks),
    every_family=True,
    reasons={
        "spare_sample": "a later sample of a plan whose earlier one passed every filter "
        "(`samples` > 1; the funnel's last generation step counts samples, `samples` x its "
        "plans)"
    },
)
def one_per_plan_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """Every family; only jobs that sample a plan more than once have spares."""
    return one_per_plan
