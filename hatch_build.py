"""Build hook: compile the incremental checker's C certifier when a C compiler is at hand.

It is optional: without a compiler (or with GUARDRAIL_PURE_PYTHON=1) the wheel is pure Python
and ``guardrail.incremental`` runs its Python checker alone, with the same verdicts.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/guardrail/incremental/_certify.c")


def compile_certifier(root: Path, out_dir: Path) -> Path:
    """Compile ``_certify.c`` into ``out_dir``; the extension module's path."""
    target = out_dir / ("_certify" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    include = sysconfig.get_paths()["include"]
    flags = ["-O2", "-shared", "-fPIC", f"-I{include}", str(root / SOURCE), "-o", str(target)]
    # The compiler Python was built with, else the system's (a distribution's Python may name
    # a cross compiler that isn't installed).
    configured = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    for compiler in (configured, ["cc"]):
        try:
            subprocess.run([*compiler, *flags], check=True, capture_output=True)
            return target
        except FileNotFoundError:
            continue
    raise FileNotFoundError("no C compiler")


class CertifierHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("GUARDRAIL_PURE_PYTHON") == "1":
            return
        root = Path(self.root)
        try:
            if version == "editable":  # the source tree is imported: build in place
                compile_certifier(root, root / SOURCE.parent)
                return
            built = compile_certifier(root, Path(tempfile.mkdtemp()))
        except (OSError, subprocess.CalledProcessError) as exc:
            self.app.display_warning(f"C certifier not built ({exc}); pure Python it is")
            return
        build_data["force_include"][str(built)] = f"guardrail/incremental/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
