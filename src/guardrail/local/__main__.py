"""``python -m guardrail.local``: convert and cache the local model now (scripts/install runs it),
so that the server's first start loads it in seconds. ``GUARDRAIL_LOCAL_MODEL`` picks the model."""

from __future__ import annotations

import os
import sys
import time

from .model import ModelNotFound, cache_dir_for, find_gguf, load_model


def main() -> int:
    """Prepare the model; exit 1 (with the reason) when it cannot be found."""
    try:
        path = find_gguf(os.environ.get("GUARDRAIL_LOCAL_MODEL") or None)
    except ModelNotFound as exc:
        print(f"guardrail.local: {exc}", file=sys.stderr)
        return 1
    if (cache_dir_for(path) / "model.safetensors").is_file():
        print(f"guardrail.local: {path.name} is ready ({cache_dir_for(path)})")
        return 0
    start = time.perf_counter()
    load_model(path)
    took = time.perf_counter() - start
    print(f"guardrail.local: converted {path.name} in {took:.1f} s ({cache_dir_for(path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
