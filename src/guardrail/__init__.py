"""guardrail: enforce JSON Schemas on LLM output, for any model."""

from .check import Outcome, Result, validate
from .errors import GuardrailError
from .repair import Repair
from .validation import CompiledSchema, Violation, compile_schema

__all__ = [
    "CompiledSchema",
    "GuardrailError",
    "Outcome",
    "Repair",
    "Result",
    "Violation",
    "compile_schema",
    "validate",
]
__version__ = "0.1.0"
