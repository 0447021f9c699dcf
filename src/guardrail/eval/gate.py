"""The CI gate: minimum conformance per schema, checked on one stage (``guardrail`` by default).

A thresholds file is TOML:

    stage = "guardrail"        # optional: the stage the gate reads
    default = 0.95             # optional: for schemas not listed
    [schemas]
    person = 0.99
    invoice = 0.9
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .metrics import GroupMetrics
from .spec import SpecError, Stage


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Stage = Stage.GUARDRAIL
    default: float | None = Field(None, ge=0, le=1)
    schemas: dict[str, float] = Field(default_factory=dict)

    def for_schema(self, schema: str) -> float | None:
        return self.schemas.get(schema, self.default)


def load_thresholds(path: Path) -> Thresholds:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    try:
        thresholds = Thresholds.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{path}: {where}: {first['msg']}") from None
    for name, value in thresholds.schemas.items():
        if not 0 <= value <= 1:
            raise SpecError(f"{path}: schemas.{name}: a threshold is a rate from 0 to 1")
    return thresholds


@dataclass(frozen=True, slots=True)
class Shortfall:
    schema: str
    target: str
    stage: str
    rate: float
    hits: int
    total: int
    threshold: float

    def line(self) -> str:
        return (
            f"{self.schema} on {self.target} ({self.stage}): conformance "
            f"{100 * self.rate:.1f}% ({self.hits}/{self.total}) is below "
            f"{100 * self.threshold:g}%"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    shortfalls: tuple[Shortfall, ...] = ()
    checked: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.shortfalls


def gate(metrics: Sequence[GroupMetrics], thresholds: Thresholds) -> Verdict:
    """Each schema × target group of the gate's stage against its schema's threshold. A group
    with no answered call falls short (nothing shows it conforms)."""
    shortfalls = []
    checked = []
    for group in metrics:
        if group.key.stage != thresholds.stage.value:
            continue
        threshold = thresholds.for_schema(group.key.schema)
        if threshold is None:
            continue
        checked.append(f"{group.key.schema}@{group.key.target}")
        rate = group.conformance
        if rate.total == 0 or rate.value < threshold:
            shortfalls.append(
                Shortfall(
                    group.key.schema,
                    group.key.target,
                    group.key.stage,
                    rate.value,
                    rate.hits,
                    rate.total,
                    threshold,
                )
            )
    return Verdict(tuple(shortfalls), tuple(checked))


def uniform(minimum: float, stage: Stage = Stage.GUARDRAIL) -> Thresholds:
    """One threshold for every schema (``--min-conformance``)."""
    return Thresholds(stage=stage, default=minimum)


def missing_schemas(thresholds: Thresholds, seen: Mapping[str, object]) -> list[str]:
    """Schemas the thresholds name that the results never mention (likely a typo)."""
    return sorted(name for name in thresholds.schemas if name not in seen)
