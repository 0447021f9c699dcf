"""Check the hand-assigned labels of the raw model output corpus (corpus.jsonl).

    python tests/data/check_corpus.py [path/to/corpus.jsonl]

Asserts for every case that:
- the record has the expected keys and a known schema and label;
- ``valid``: the raw output parses with ``json.loads`` as is and validates against the schema,
  and ``expected_value`` equals the parsed output;
- ``repaired``: ``expected_value`` validates against the schema, while the raw output does not
  already parse as is into a schema-valid value; and every string in it (keys and values) occurs
  in the raw output, ignoring case, since repairs may not invent data;
- ``failed``: ``expected_value`` is null and the raw output does not already parse as is into a
  schema-valid value.

Validation is JSON Schema draft 2020-12 with format checking. Prints counts per schema and label;
exits non-zero on the first failed check. Needs only the standard library and ``jsonschema``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
SCHEMA_DIR = HERE.parent.parent / "schemas"
DEFAULT_CORPUS = HERE / "corpus.jsonl"
KEYS = {"id", "schema", "round", "model", "prompt", "output", "expected", "expected_value", "note"}
LABELS = ("valid", "repaired", "failed")
MIN_CASES = 100
MIN_PER_SCHEMA = 15
# Formats used by the schemas. jsonschema checks "date-time" only when rfc3339-validator is
# installed and silently passes it otherwise, which would make the labels unverifiable.
REQUIRED_FORMATS = ("date", "date-time", "email")


def load_validators() -> dict[str, Draft202012Validator]:
    missing = [f for f in REQUIRED_FORMATS if f not in Draft202012Validator.FORMAT_CHECKER.checkers]
    assert not missing, f"jsonschema cannot check formats {missing}: pip install rfc3339-validator"
    validators: dict[str, Draft202012Validator] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        validators[path.stem] = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
    return validators


def parses_valid_as_is(output: str, validator: Draft202012Validator) -> bool:
    """Whether the raw output, untouched, is JSON that validates against the schema."""
    try:
        value = json.loads(output)
    except ValueError:
        return False
    return bool(validator.is_valid(value))


def first_error(value: Any, validator: Draft202012Validator) -> str:
    error = next(iter(validator.iter_errors(value)), None)
    return "" if error is None else f"{error.json_path}: {error.message}"


def strings_in(value: Any) -> list[str]:
    """All object keys and string values in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def occurs_in(text: str, output: str) -> bool:
    """Whether a string occurs in the raw output, as written or JSON-escaped, ignoring case."""
    haystack = output.casefold()
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    return text.casefold() in haystack or escaped.casefold() in haystack


def check_case(record: dict[str, Any], validators: dict[str, Draft202012Validator]) -> None:
    case = record.get("id", "<no id>")
    assert set(record) == KEYS, f"{case}: keys {sorted(record)} != {sorted(KEYS)}"
    assert record["schema"] in validators, f"{case}: unknown schema {record['schema']!r}"
    assert record["id"].startswith(record["schema"] + "-"), f"{case}: id does not name its schema"
    assert record["expected"] in LABELS, f"{case}: label {record['expected']!r} not in {LABELS}"
    assert isinstance(record["output"], str), f"{case}: output is not a string"
    assert isinstance(record["note"], str) and record["note"].strip(), f"{case}: empty note"
    assert "\n" not in record["note"], f"{case}: note is more than one line"

    validator = validators[record["schema"]]
    output: str = record["output"]
    expected_value = record["expected_value"]
    valid_as_is = parses_valid_as_is(output, validator)

    if record["expected"] == "valid":
        assert valid_as_is, (
            f"{case}: labelled valid but the raw output does not parse and validate as is"
        )
        assert expected_value == json.loads(output), (
            f"{case}: expected_value differs from the parsed output"
        )
    elif record["expected"] == "repaired":
        assert isinstance(expected_value, (dict, list)), f"{case}: repaired needs an expected_value"
        assert validator.is_valid(expected_value), (
            f"{case}: expected_value does not validate: {first_error(expected_value, validator)}"
        )
        assert not valid_as_is, f"{case}: labelled repaired but the raw output is already valid"
        invented = [text for text in strings_in(expected_value) if not occurs_in(text, output)]
        assert not invented, f"{case}: expected_value strings not in the output: {invented}"
    else:
        assert expected_value is None, f"{case}: failed cases have a null expected_value"
        assert not valid_as_is, f"{case}: labelled failed but the raw output is valid as is"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CORPUS
    validators = load_validators()
    records = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    ids = [record.get("id") for record in records]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate ids: {duplicates}"

    for record in records:
        check_case(record, validators)

    counts = Counter((record["schema"], record["expected"]) for record in records)
    schemas = sorted({record["schema"] for record in records})
    print(f"{'schema':<10}" + "".join(f"{label:>10}" for label in LABELS) + f"{'total':>10}")
    for schema in schemas:
        row = [counts[schema, label] for label in LABELS]
        print(f"{schema:<10}" + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")
        assert sum(row) >= MIN_PER_SCHEMA, f"{schema}: only {sum(row)} cases"
    totals = [sum(counts[schema, label] for schema in schemas) for label in LABELS]
    print(f"{'total':<10}" + "".join(f"{n:>10}" for n in totals) + f"{sum(totals):>10}")
    assert len(records) >= MIN_CASES, f"only {len(records)} cases"
    print(f"corpus OK: {len(records)} cases checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
