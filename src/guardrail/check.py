"""Check one model output against a schema: parse, validate, repair. The Python API's ``validate``.

The proxy pipeline, the admin ``/guardrail/validate`` endpoint and ``guardrail.validate`` all call
``check``, so an output gets the same verdict wherever it is checked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from .repair import Repair
from .repair import repair as repair_text
from .validation import CompiledSchema, Schema, Violation, cached, compile_schema


class Outcome(StrEnum):
    """How a request's answer came to be (the ``X-Guardrail-Outcome`` header)."""

    VALID = "valid"  # the model's output conformed as it was
    REPAIRED = "repaired"  # repair steps made it conform, with no further upstream call
    REASKED = "reasked"  # a later attempt conformed
    FAILED = "failed"  # no attempt conformed
    UNCHECKED = "unchecked"  # no schema applied
    PENDING = "pending"  # a progressive stream: the verdict comes at its end, in the stream


class Result(NamedTuple):
    """The verdict on one output. ``value`` is the parsed (and repaired) value, or None."""

    valid: bool
    outcome: Outcome
    value: Any
    errors: tuple[Violation, ...]
    repairs: tuple[Repair, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "outcome": self.outcome.value,
            "value": self.value,
            "repairs": [r.to_json() for r in self.repairs],
            "errors": [e.to_json() for e in self.errors],
        }


_NO_ERRORS: tuple[Violation, ...] = ()
_NO_REPAIRS: tuple[Repair, ...] = ()
_new = tuple.__new__  # builds a Result from a tuple at half the cost of Result(...)
_loads = orjson.loads
_VALID = Outcome.VALID


def not_json(output: str | bytes) -> Violation:
    try:
        orjson.loads(output)
    except orjson.JSONDecodeError as exc:
        return Violation("", "json", f"the output is not JSON: {exc}")
    return Violation("", "json", "the output holds no JSON value guardrail could read")


def check(compiled: CompiledSchema, output: str | bytes, *, repair: bool = True) -> Result:
    """Validate ``output`` (raw model text) against ``compiled``, repairing it when allowed."""
    try:
        value = _loads(output)
    except orjson.JSONDecodeError:
        parsed = False
    else:
        if compiled.is_valid(value):
            return _new(Result, (True, _VALID, value, _NO_ERRORS, _NO_REPAIRS))
        parsed = True
    if not repair:
        errors = compiled.errors(value) if parsed else (not_json(output),)
        return Result(False, Outcome.FAILED, value if parsed else None, errors, _NO_REPAIRS)
    fixed = repair_text(output, compiled)
    if fixed.conforms:
        return Result(True, Outcome.REPAIRED, fixed.value, _NO_ERRORS, fixed.repairs)
    if not fixed.parsed:
        return Result(False, Outcome.FAILED, None, (not_json(output),), _NO_REPAIRS)
    return Result(False, Outcome.FAILED, fixed.value, compiled.errors(fixed.value), fixed.repairs)


def validate(schema: Schema | str | type, output: str | bytes, *, repair: bool = True) -> Result:
    """Check raw model ``output`` against ``schema`` (a dict, a JSON string or a pydantic model
    class; compiled once and cached). With ``repair``, syntax and type slips are fixed and the
    fixed value is validated against the full schema.
    """
    compiled = cached(schema) or compile_schema(schema)
    # The common case inline (valid as sent): one call less on the hot path.
    try:
        value = _loads(output)
    except orjson.JSONDecodeError:
        pass
    else:
        if compiled.is_valid(value):
            return _new(Result, (True, _VALID, value, _NO_ERRORS, _NO_REPAIRS))
    return check(compiled, output, repair=repair)
