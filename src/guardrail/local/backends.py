"""The structured-generation backends outlines offers, as a table: name -> how to use it.

Each backend answers two questions. ``check`` (cheap, no model needed, safe on the event loop for
a normal schema): can the backend compile this schema, and which of its keywords will the
constraint not enforce? ``processor`` (slow: token-level compilation against the model's
vocabulary, run on the worker thread and cached by fingerprint): the logits processor, built with
outlines' public ``Generator``. A schema ``check`` rejects is generated without a constraint (the
schema goes into the prompt) and guardrail's full check, repair and re-ask do the work.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..portability import keywords_used

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Support:
    """What a backend makes of a schema: ``error`` set means it cannot compile it at all.
    The engine adds what its narrowing did (``narrowed``) and the schema it compiles."""

    relaxed: tuple[str, ...] = ()
    error: str | None = None
    narrowed: tuple[str, ...] = ()
    constraint: JSON | None = None  # the narrowed schema (narrowing.narrow), None: not narrowed


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --------------------------------------------------------------------------------------------
# llguidance: lenient mode ignores what it does not implement and says so in its warnings.
# --------------------------------------------------------------------------------------------

# Compact JSON: flexible whitespace lets a small model pad an answer with newlines until
# max_tokens runs out; fixed separators keep answers short and tokens/s honest.
LLGUIDANCE_OPTIONS: Final[JSON] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
_UNIMPLEMENTED = re.compile(r"Unimplemented keys: \[(.*?)\]")


def _llguidance_check(schema: JSON) -> Support:
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema(schema, defaults=LLGUIDANCE_OPTIONS)  # type: ignore[arg-type]
    failed, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        return Support(("*",), messages[0] if messages else "llguidance rejected the schema")
    relaxed = {
        key.strip().strip('"')
        for message in messages
        for listed in _UNIMPLEMENTED.findall(message)
        for key in listed.split(",")
    }
    return Support(tuple(sorted(k for k in relaxed if k)))


def _llguidance_schema(schema: JSON) -> JSON:
    # outlines passes the schema to llguidance as is; x-guidance carries the compile options.
    return {**schema, "x-guidance": LLGUIDANCE_OPTIONS}


def _as_is(schema: JSON) -> JSON:
    return schema


# --------------------------------------------------------------------------------------------
# outlines-core: schema -> regex. No numeric bounds, few formats; the rest is ignored silently.
# --------------------------------------------------------------------------------------------

OUTLINES_CORE_WHITESPACE: Final = r"[ ]?"
_OUTLINES_CORE_IGNORES: Final = _words(
    "minimum maximum exclusiveMinimum exclusiveMaximum multipleOf uniqueItems contains"
    " minContains maxContains patternProperties propertyNames minProperties maxProperties"
    " dependentRequired dependentSchemas dependencies not if then else unevaluatedProperties"
    " unevaluatedItems"
)


def _outlines_core_check(schema: JSON) -> Support:
    from outlines_core.json_schema import build_regex_from_schema  # type: ignore[import-untyped]

    try:
        build_regex_from_schema(orjson.dumps(schema).decode(), OUTLINES_CORE_WHITESPACE)
    except Exception as exc:  # the compiler raises a bare ValueError/RuntimeError per problem
        return Support(("*",), f"outlines-core cannot compile the schema: {exc}")
    return Support(tuple(sorted(keywords_used(schema) & _OUTLINES_CORE_IGNORES)))


# --------------------------------------------------------------------------------------------
# xgrammar: schema -> EBNF grammar.
# --------------------------------------------------------------------------------------------

_XGRAMMAR_IGNORES: Final = _words(
    "multipleOf uniqueItems contains minContains maxContains patternProperties propertyNames"
    " minProperties maxProperties unevaluatedProperties unevaluatedItems dependentRequired"
    " dependentSchemas dependencies not if then else allOf"
)


def _xgrammar_check(schema: JSON) -> Support:
    import xgrammar

    try:
        xgrammar.Grammar.from_json_schema(orjson.dumps(schema).decode(), any_whitespace=False)
    except Exception as exc:  # xgrammar raises RuntimeError with the C++ message
        return Support(("*",), f"xgrammar cannot compile the schema: {exc}")
    return Support(tuple(sorted(keywords_used(schema) & _XGRAMMAR_IGNORES)))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend: its outlines name, the cheap check and how the schema is handed to outlines."""

    name: str
    outlines_name: str
    check: Callable[[JSON], Support]
    prepare: Callable[[JSON], JSON]  # the (narrowed) schema as outlines gets it
    whitespace: str | None  # outlines' whitespace_pattern, for the backends that take one


BACKENDS: Final[dict[str, Backend]] = {
    "llguidance": Backend("llguidance", "llguidance", _llguidance_check, _llguidance_schema, None),
    "outlines-core": Backend(
        "outlines-core",
        "outlines_core",
        _outlines_core_check,
        _as_is,
        OUTLINES_CORE_WHITESPACE,
    ),
    "xgrammar": Backend("xgrammar", "xgrammar", _xgrammar_check, _as_is, None),
}
DEFAULT_BACKEND: Final = "llguidance"


def backend_for(name: str) -> Backend:
    """The backend called ``name``; ValueError names the valid ones."""
    try:
        return BACKENDS[name.strip().lower().replace("_", "-")]
    except KeyError:
        raise ValueError(f"unknown local backend {name!r}; valid: {', '.join(BACKENDS)}") from None


class _LLGuidanceMatcher:
    """One generation's llguidance matcher (generate.Matcher): the mask as a bool tensor, and
    the fast-forward tokens after each sampled one."""

    def __init__(self, matcher: Any, vocab: int) -> None:
        import llguidance.torch
        import torch

        self.matcher = matcher
        self.vocab = vocab
        self.bits = llguidance.torch.allocate_token_bitmask(1, vocab)
        self.shifts = torch.arange(32, dtype=torch.int32)
        self.mask: Any = None

    def allowed(self) -> Any:
        import llguidance.torch

        llguidance.torch.fill_next_token_bitmask(self.matcher, self.bits, 0)
        self.mask = ((self.bits[0].unsqueeze(1) >> self.shifts) & 1).bool().flatten()[: self.vocab]
        return self.mask

    def apply(self, history: list[int], logits: Any) -> Any:
        import torch

        mask = self.allowed() if self.mask is None else self.mask
        logits[0, : len(mask)][~mask] = -torch.inf
        return logits

    def advance(self, token: int) -> list[int]:
        self.mask = None
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"llguidance refused token {token}: {self.matcher.get_error()}")
        forced: list[int] = self.matcher.compute_ff_tokens()
        if forced:
            self.matcher.consume_tokens(forced)
        return forced


class _LLGuidanceConstraint:
    """A compiled llguidance grammar: each generation starts from a copy of the pristine
    matcher (copying is microseconds; compiling is what the cache saves)."""

    def __init__(self, tokenizer: Any, schema: JSON) -> None:
        from llguidance import LLMatcher

        grammar = LLMatcher.grammar_from_json_schema(_llguidance_schema(schema))
        self.pristine = LLMatcher(tokenizer, grammar)
        if self.pristine.is_error():
            raise ValueError(self.pristine.get_error())
        self.vocab: int = tokenizer.vocab_size

    def matcher(self) -> _LLGuidanceMatcher:
        return _LLGuidanceMatcher(self.pristine.deep_copy(), self.vocab)


class _ProcessorMatcher:
    """An outlines logits processor (outlines-core, xgrammar) as a generate.Matcher: it masks
    full logits and forces nothing."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def allowed(self) -> Any:
        return None

    def apply(self, history: list[int], logits: Any) -> Any:
        import torch

        return self.processor(torch.tensor([history]), logits)

    def advance(self, token: int) -> list[int]:
        return []


class _ProcessorConstraint:
    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def matcher(self) -> _ProcessorMatcher:
        self.processor.reset()
        return _ProcessorMatcher(self.processor)


# id(tokenizer) -> (the tokenizer, kept alive so its id is never reused; llguidance's view).
_LLG_TOKENIZERS: dict[int, tuple[Any, Any]] = {}


def llguidance_tokenizer(hf_tokenizer: Any) -> Any:
    """llguidance's view of the model's tokenizer (built once per tokenizer: about a second)."""
    found = _LLG_TOKENIZERS.get(id(hf_tokenizer))
    if found is None:
        import llguidance.hf

        found = (hf_tokenizer, llguidance.hf.from_tokenizer(hf_tokenizer))
        _LLG_TOKENIZERS[id(hf_tokenizer)] = found
    return found[1]


def build_constraint(backend: Backend, model: Any, schema: JSON) -> Any:
    """The backend's compiled constraint for ``schema``, already narrowed (slow: compiles
    against the vocabulary); ``.matcher()`` starts one generation. llguidance is driven
    directly (the decoding loop uses its fast-forward tokens); the other backends through
    outlines' public ``Generator``."""
    if backend.name == "llguidance":
        return _LLGuidanceConstraint(llguidance_tokenizer(model.tokenizer), schema)
    import outlines
    from outlines.types import JsonSchema

    output = JsonSchema(backend.prepare(schema), whitespace_pattern=backend.whitespace)
    generator: Any = outlines.Generator(model.outlines_model, output, backend=backend.outlines_name)
    return _ProcessorConstraint(generator.logits_processor)
