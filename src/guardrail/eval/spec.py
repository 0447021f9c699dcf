"""The eval spec: ``guardrail.eval.toml`` read into value objects.

A spec names the targets to compare (an upstream URL with its dialect, or ``local``), the cases
(a schema, the messages, optionally the values expected at JSON pointers) and the stages each
case runs in. Everything is checked when the file is read, so a bad spec fails before any call:
``SpecError`` carries one line saying what is wrong and where.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import Dialect

LOCAL = "local"


class SpecError(Exception):
    """A spec, results or thresholds file that cannot be used; the message is one line."""


class Stage(StrEnum):
    """How a case is sent: the three ways a team could call a model."""

    RAW = "raw"  # no constraint, one attempt; the output is only classified, for the metrics
    NATIVE = "native"  # the dialect's native constraint, one attempt, no repair
    GUARDRAIL = "guardrail"  # the full pipeline: constrain, check, repair, re-ask


class TargetSpec(BaseModel):
    """A model to compare: where it is served, how to ask it, what it costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    upstream: str = Field(description="an OpenAI-compatible base URL, or 'local'")
    dialect: Dialect = "auto"
    model: str = ""
    api_key_env: str | None = None
    price_prompt: float = Field(0.0, ge=0, description="per 1,000 prompt tokens")
    price_completion: float = Field(0.0, ge=0, description="per 1,000 completion tokens")
    # Extra Settings fields for this target (e.g. a local model's options).
    settings: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.upstream == LOCAL

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_prompt + completion_tokens * self.price_completion
        ) / 1000


class CaseSpec(BaseModel):
    """One input: a schema (registered name, ``name@version`` or a ``.json`` file), the messages
    (or a ``prompt`` that the spec's ``system`` template wraps) and the expected values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = ""
    schema_: str = Field(alias="schema", min_length=1)
    messages: tuple[dict[str, Any], ...] = ()
    prompt: str | None = None
    expect: dict[str, Any] = Field(default_factory=dict, description="JSON pointer -> value")

    @model_validator(mode="after")
    def _one_input(self) -> CaseSpec:
        if bool(self.messages) == (self.prompt is not None):
            raise ValueError("give either 'messages' or 'prompt'")
        for pointer in self.expect:
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"expect key {pointer!r} is not a JSON pointer (start with '/')")
        return self

    @property
    def schema_ref(self) -> str:
        return self.schema_


class EvalSpec(BaseModel):
    """The whole spec file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[TargetSpec, ...] = Field(min_length=1)
    cases: tuple[CaseSpec, ...] = Field(min_length=1)
    stages: tuple[Stage, ...] = (Stage.RAW, Stage.NATIVE, Stage.GUARDRAIL)
    repeat: int = Field(1, ge=1, le=1000)
    # The system message for cases given as a ``prompt``; {schema} and {title} are filled in.
    system: str = (
        "Extract the {title} from the user's text. Reply with only a JSON object matching "
        "this JSON Schema: {schema}"
    )
    max_tokens: int | None = Field(256, ge=1)
    temperature: float | None = Field(None, ge=0)
    max_attempts: int | None = Field(None, ge=1, le=20)
    request_timeout: float = Field(180.0, gt=0)
    upstream_timeout: float = Field(120.0, gt=0)
    schemas_dir: Path = Path("schemas")
    # The registry holding named schemas; the default is in memory, loaded from schemas_dir.
    database_url: str = "sqlite:///"

    @model_validator(mode="after")
    def _unique(self) -> EvalSpec:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique")
        ids = [c.id for c in self.cases]
        if len(set(ids)) != len(ids):
            raise ValueError("case ids must be unique")
        return self


def load_spec(path: Path) -> EvalSpec:
    """Read and check a spec file. Relative ``schemas_dir`` and schema files are taken relative
    to the spec's folder; cases without an ``id`` are numbered ``<schema>-<n>``."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    cases = document.get("cases")
    if isinstance(cases, list):
        counts: dict[str, int] = {}
        for case in cases:
            if isinstance(case, dict) and not case.get("id"):
                stem = Path(str(case.get("schema", "case"))).stem.split("@")[0]
                counts[stem] = counts.get(stem, 0) + 1
                case["id"] = f"{stem}-{counts[stem]}"
    try:
        spec = EvalSpec.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(f"{path}: {where}: {first['msg']}{more}") from None
    base = path.resolve().parent
    if not spec.schemas_dir.is_absolute():
        spec = spec.model_copy(update={"schemas_dir": base / spec.schemas_dir})
    resolved = tuple(_relative_file(case, base) for case in spec.cases)
    return spec.model_copy(update={"cases": resolved})


def _relative_file(case: CaseSpec, base: Path) -> CaseSpec:
    ref = case.schema_ref
    if ref.endswith(".json") and not Path(ref).is_absolute():
        return case.model_copy(update={"schema_": str(base / ref)})
    return case


def is_schema_file(ref: str) -> bool:
    return ref.endswith(".json")


def render_messages(case: CaseSpec, system: str, schema: Any, title: str) -> list[dict[str, Any]]:
    """The case's messages; a ``prompt`` case gets the spec's system message with the schema."""
    if case.prompt is None:
        return [dict(m) for m in case.messages]
    text = system.replace("{schema}", orjson.dumps(schema).decode()).replace("{title}", title)
    return [{"role": "system", "content": text}, {"role": "user", "content": case.prompt}]
