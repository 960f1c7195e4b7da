"""Every unusable generation becomes a reject with a reason code, never a silent None."""

import pytest

from pipeline.generation.backends.base import Result
from pipeline.generation.parse import ParseFailure, parse_result

SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1}},
    "required": ["query"],
    "additionalProperties": False,
}


def result(text: str, finish: str = "stop", error: str | None = None) -> Result:
    return Result(
        text=text, finish_reason=finish, prompt_tokens=3, completion_tokens=5, error=error
    )


def test_valid_output_parses() -> None:
    assert parse_result(result('{"query": "danube length"}'), SCHEMA) == {"query": "danube length"}


@pytest.mark.parametrize(
    ("raw", "finish", "error", "reason"),
    [
        ('{"query": "unfinished', "length", None, "truncated"),
        ("not json", "stop", None, "invalid_json"),
        ('{"q": "x"}', "stop", None, "schema_mismatch"),
        ('{"query": ""}', "stop", None, "schema_mismatch"),
        ("", None, "prompt too long", "generation_error"),
    ],
)
def test_failures_carry_a_reason(raw: str, finish: str, error: str | None, reason: str) -> None:
    with pytest.raises(ParseFailure) as info:
        parse_result(result(raw, finish, error), SCHEMA)
    assert info.value.reason == reason
    assert info.value.detail


def test_raw_control_characters_inside_strings_are_accepted() -> None:
    # The guided grammar lets a raw tab or newline into a string; it is kept, not rejected.
    assert parse_result(result('{"query": "tab\there"}'), SCHEMA) == {"query": "tab\there"}
