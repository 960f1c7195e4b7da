"""Turn raw generations into validated JSON objects, or into rejects with a reason code.

A generation never silently becomes None: it is either a dict that satisfies the stage's
schema or a reject saying why not (generation_error, prompt_too_long, truncated,
invalid_json, schema_mismatch), with the raw text kept for inspection.

A backend marks a failure that is a property of the request itself, and so comes back the
same on every retry, by starting `Result.error` with its code and ": " (see
PERMANENT_ERRORS); any other error is transient (a server that timed out, an engine error).
"""

import json
from typing import Any

import jsonschema

from pipeline.generation.backends.base import Result

# The request's prompt, after the chat template, leaves no room in the engine's
# `max_model_len` for even one answer token: the same document fails the same way on every
# run, so it is a reject of its own (and the document counts as done), not a retry.
PROMPT_TOO_LONG = "prompt_too_long"
PERMANENT_ERRORS = frozenset({PROMPT_TOO_LONG})

# Reject reasons that say nothing about the document, only that its request failed (a
# server down, a timeout): the document stays uncovered, and the next run or refresh
# generates it again, instead of losing it for good.
TRANSIENT = frozenset({"generation_error"})


class ParseFailure(Exception):
    """A generation that could not be used; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def permanent_error(result: Result) -> str | None:
    """The code of a failure that retrying cannot fix (e.g. `prompt_too_long`), or None for
    a success or a transient error."""
    if result.error is None:
        return None
    code, separator, _ = result.error.partition(": ")
    return code if separator and code in PERMANENT_ERRORS else None


def parse_result(result: Result, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in `result`, checked against `schema`; raises ParseFailure."""
    if result.error is not None:
        raise ParseFailure(permanent_error(result) or "generation_error", result.error)
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
