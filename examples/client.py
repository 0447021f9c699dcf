"""A guardrail client in a few lines: register a schema, check model outputs, read the verdicts.

Run a server first (scripts/serve), then:

    .venv/bin/python examples/client.py [--url http://127.0.0.1:8080]
"""

from __future__ import annotations

import argparse

import httpx

import guardrail

RECIPE = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "servings": {"type": "integer", "minimum": 1},
        "ingredients": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["title", "servings", "ingredients"],
    "additionalProperties": False,
}

# What small models really send back: fences, prose, strings for numbers, Python literals.
OUTPUTS = [
    '{"title": "Pancakes", "servings": 4, "ingredients": ["flour", "milk", "eggs"]}',
    "Sure! Here's the recipe:\n```json\n{'title': 'Pancakes', 'servings': '4', "
    "'ingredients': 'flour',}\n```",
    '{"title": "Pancakes", "ingredients": []}',
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    url = parser.parse_args().url

    with httpx.Client(base_url=url, timeout=10) as http:
        registered = http.post("/guardrail/schemas/recipe/versions", json={"schema": RECIPE})
        registered.raise_for_status()
        print(f"schema recipe@{registered.json()['version']}")
        for output in OUTPUTS:
            verdict = http.post("/guardrail/validate", json={"schema": "recipe", "output": output})
            body = verdict.json()
            steps = ", ".join(r["step"] for r in body["repairs"]) or "-"
            problems = "; ".join(f"{e['path'] or '/'}: {e['message']}" for e in body["errors"])
            print(f"server: {body['outcome']:<9} repairs: {steps:<40} {problems}")

    # The same checks in-process, no server needed.
    for output in OUTPUTS:
        result = guardrail.validate(RECIPE, output)
        print(f"local:  {result.outcome:<9} value: {result.value}")


if __name__ == "__main__":
    main()
