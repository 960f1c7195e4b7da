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
        # strict=False accepts a raw tab or newline inside a string: the guided grammar lets
        # them through and they do not change the text's meaning, so rejecting the whole
        # generation for one would waste it (1 in 3 long outputs of the tiny test model).
        value = json.loads(result.text, strict=False)
    except json.JSONDecodeError as exc:
        if result.finish_reason == "length":
            raise ParseFailure(
                "truncated", f"hit max_tokens after {result.completion_tokens} tokens"
            ) from exc
        raise ParseFailure("invalid_json", f"{exc.msg} at char {exc.pos}") from exc
    # The schemas are ours and known good: skip jsonschema.validate's per-call check of the
    # schema itself, which costs more than the validation.
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(value)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ParseFailure("schema_mismatch", f"{where}: {error.message}"[:500])
    return value
