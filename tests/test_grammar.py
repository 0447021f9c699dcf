from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail.upstream.grammar import FORMAT_PATTERNS, lower_for_grammar
from guardrail.validation import compile_schema

EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "minutes": {"type": "integer", "minimum": 5, "maximum": 480},
        "step": {
            "type": "integer",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 100,
            "multipleOf": 25,
        },
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer", "minimum": 0},
        "who": {"type": "array", "items": {"type": "string", "format": "email"}},
        "site": {"type": "string", "format": "uri"},
        "when": {"type": "string", "format": "date-time"},
        "host": {"type": "string", "format": "hostname"},
    },
}


def test_small_integer_ranges_become_enums_and_formats_patterns() -> None:
    lowered, relaxed = lower_for_grammar(EVENT)
    props = lowered["properties"]
    assert props["minutes"]["enum"] == list(range(5, 481))
    assert props["step"]["enum"] == [25, 50, 75]
    assert "enum" not in props["score"] and "enum" not in props["count"]
    assert props["who"]["items"]["pattern"] == FORMAT_PATTERNS["email"]
    assert props["site"]["pattern"] == FORMAT_PATTERNS["uri"]
    assert "pattern" not in props["when"]  # the converters know date-time
    assert relaxed == {"minimum", "maximum", "format"}  # score, count, hostname
    assert EVENT["properties"]["minutes"] == {"type": "integer", "minimum": 5, "maximum": 480}


def test_lowering_only_narrows() -> None:
    """Every value the lowered schema's additions allow, the original allows too."""
    lowered, _ = lower_for_grammar(EVENT)
    original = compile_schema(EVENT)
    for value in lowered["properties"]["minutes"]["enum"]:
        assert original.is_valid({"minutes": value})
    pattern = re.compile(FORMAT_PATTERNS["email"])
    for address in ["a@example.com", "first.last+tag@mail.example.org"]:
        assert pattern.fullmatch(address) and original.is_valid({"who": [address]})
    for bad in ["", "a@", "@example.com", "a b@example.com"]:
        assert not pattern.fullmatch(bad)


def test_llama_cpp_converter_accepts_the_lowered_schema() -> None:
    if os.environ.get("CI"):
        import llama_cpp.llama_grammar as llama_grammar
    else:
        llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    lowered, _ = lower_for_grammar(EVENT)
    grammar = llama_grammar.json_schema_to_gbnf(json.dumps(lowered))
    assert '"\\"480\\""' not in grammar and "480" in grammar
    assert "@" in grammar


@pytest.mark.parametrize("form", sorted(FORMAT_PATTERNS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_string_a_format_pattern_admits_passes_the_format(form: str, data: Any) -> None:
    """The narrowing is sound: what the grammar lets the model write, guardrail accepts."""
    text = data.draw(st.from_regex(FORMAT_PATTERNS[form], fullmatch=True))
    assert compile_schema({"type": "string", "format": form}).is_valid(text), text
