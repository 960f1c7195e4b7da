"""Turn raw generations into validated JSON objects, or into rejects with a reason code.

A generation never silently becomes None: it is either a dict that satisfies the stage's
schema or a reject saying why not (generation_error, truncated, invalid_json,
schema_mismatch), with the raw text kept for inspection.
"""

import json
from typing import Any

import jsonschema

from pipeline.generate.backend import Result


class ParseFailure(Exception):
    """A generation that could not be used; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_result(result: Result, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in `result`, checked against `schema`; raises ParseFailure."""
    if result.error is not None:
        raise ParseFailure("generation_error", result.error)
    try:
        value = json.loads(result.text)  # strict: raw control characters are invalid JSON
    except json.JSONDecodeError as exc:
        if result.finish_reason == "length":
            raise ParseFailure(
                "truncated", f"hit max_tokens after {result.completion_tokens} tokens"
            ) from exc
        raise ParseFailure("invalid_json", f"{exc.msg} at char {exc.pos}") from exc
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ParseFailure("schema_mismatch", f"{where}: {exc.message}"[:500]) from exc
    return value
