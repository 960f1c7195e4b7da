"""Sample template variables: what the linter renders every template with, and the
placeholders the preview shows for outputs of stages that have not run."""

from typing import Any

from pipeline.prompts.library import Stage, TaskSpec

SAMPLE_PERSONAS = ["a nurse in Berlin", "a software engineer", "a retired teacher"]


def placeholder(stage: Stage, key: str) -> str:
    """The visible stand-in for an earlier stage's output."""
    return f"<placeholder: {key} from stage {stage.name}>"


def earlier_placeholders(spec: TaskSpec, index: int) -> dict[str, str]:
    """A marked stand-in for every output of the stages before stage `index`."""
    return {
        key: placeholder(stage, key)
        for stage in spec.stages[:index]
        for key in stage.schema.get("properties", {})
    }


def first_enum(stage_list: list[Stage], key: str, default: str) -> str:
    for stage in stage_list:
        values = stage.schema.get("properties", {}).get(key, {}).get("enum")
        if values:
            return str(values[0])
    return default


def sample_variables(
    spec: TaskSpec, index: int, passage: str, passage_language: str, query_language: str
) -> dict[str, Any]:
    """Variables for stage `index` of a family: a plan, and placeholders for every output
    of the stages before it (marked as such)."""
    earlier = earlier_placeholders(spec, index)
    return {
        **earlier,
        "passage": passage,
        "title": "A sample title",
        "passage_language": passage_language,
        "query_language": query_language,
        "personas": SAMPLE_PERSONAS,
        "character": earlier.get("character", SAMPLE_PERSONAS[0]),
        "question_type": earlier.get(
            "question_type", first_enum(spec.stages, "question_type", "keywords")
        ),
        "difficulty": earlier.get(
            "difficulty", first_enum(spec.stages, "difficulty", "university")
        ),
        "clarity": "clear",
        "query_words": 6,
    }
