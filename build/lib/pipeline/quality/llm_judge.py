"""The LLM judge as a filter (`filters.llm_judge`): the job's generator judges every pair of
every family under its instruction, the one check that reads a classification label, an STS
partner, a translation or a title against its text. The judging itself (requests, P(yes))
is pipeline.teacher.llm_judge's, which the `llm` teacher shares."""

from functools import partial
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.config.base import Strict
from pipeline.quality.registry import Check, register

if TYPE_CHECKING:  # annotations only: both import the job config, which imports this
    from pipeline.config.job import JobConfig
    from pipeline.prompts.library import PromptLibrary
    from pipeline.quality.chain import Context


class LlmJudgeFilter(Strict):
    """The job's generator judges every pair of every family under its instruction (yes/no,
    see pipeline.teacher.llm_judge): the one check of a label, partner or title."""

    enabled: bool = False
    min_score: float = Field(0.5, ge=0, le=1, description="the least P(yes) a kept pair has")


@register(
    "llm_judge",
    order=900,
    settings=LlmJudgeFilter,
    needs=frozenset({"generator"}),
    every_family=True,
    reasons={
        "judge_says_no": "P(yes) below `min_score` (score: P(yes))",
        "judge_unscored": "the judge request failed or gave no yes/no",
    },
)
def llm_judge_check(config: "JobConfig", library: "PromptLibrary", context: "Context") -> Check:
    """Every family, each pair under its own instruction."""
    # Imported here: both import the job config, which imports this module.
    from pipeline.generation.stages import pair_instruction
    from pipeline.teacher.llm_judge import judge_check

    assert context.generator is not None
    instruction_of = partial(pair_instruction, library)
    return judge_check(context.generator, config.filters.llm_judge, instruction_of)
