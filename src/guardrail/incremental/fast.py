"""``IncrementalChecker``: the C certifier in front of the Python checker, when it is built.

The certifier (``_certify.c``) reads each piece in C and only ever says "nothing to report"; when
it is unsure it hands the stream over to ``PythonChecker``, which replays the pieces so far and
goes on alone. Verdicts are therefore always the Python checker's. At the end it may settle the
answer as valid by itself (``Certifier.settle``, see ``views.Closing``); otherwise, and for every
violation, ``finish`` runs the full validation as the Python checker does. Without the
compiled module (no C compiler at install time, or built with ``GUARDRAIL_PURE_PYTHON=1``) the
Python checker runs alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Final

from ..validation import CompiledSchema, Schema, Violation, compile_schema
from .checker import PythonChecker, verdict, wants_container
from .views import View, root_view

try:
    from ._certify import Certifier
except ImportError:  # not built: pure Python
    ACCELERATED = False
else:
    ACCELERATED = True


def _replay(schema: Schema, pieces: list[str]) -> tuple[PythonChecker, Violation | None]:
    """A Python checker fed ``pieces``, and its verdict on them."""
    checker = PythonChecker(schema)
    found = None
    for piece in pieces:
        found = checker.feed(piece)
        if found is not None:
            break
    return checker, found


_Setup = tuple[CompiledSchema, View, bool, Callable[[list[str]], Any]]
_setups: dict[int, _Setup] = {}
_SETUPS_CACHED: Final = 256


def _setup(schema: Schema, compiled: CompiledSchema) -> _Setup:
    """What every certifier of ``compiled`` starts from (root view, whether prose before the
    root is skipped, the replay), made once per compiled schema: it is on every stream's path."""
    hit = _setups.get(id(compiled))
    if hit is None or hit[0] is not compiled:
        root = root_view(compiled)
        hit = (compiled, root, wants_container(root), partial(_replay, schema))
        if len(_setups) >= _SETUPS_CACHED:
            _setups.pop(next(iter(_setups), 0), None)  # threads may evict the same one
        _setups[id(compiled)] = hit
    return hit


class IncrementalChecker:
    """Checks one streamed answer against ``schema``: ``feed`` each piece, then ``finish``.

    Both return the first definite violation, or None; once one is found every later call returns
    it again. The schema is compiled (and cached) by ``compile_schema``, whose ``InvalidSchema``
    and ``RemoteRefRejected`` the constructor raises. One checker per stream.
    """

    __slots__ = ("_compiled", "_core", "_python", "_schema", "_verdict", "feed")

    feed: Callable[[str], Violation | None]
    """Read the next piece of the answer; the first definite violation so far, or None."""
    _core: Certifier | None
    _python: PythonChecker | None

    def __init__(self, schema: Schema) -> None:
        self._schema = schema
        self._compiled: CompiledSchema = compile_schema(schema)
        self._verdict: tuple[Violation | None] | None = None
        if ACCELERATED:
            _, root, skips_prose, replay = _setup(schema, self._compiled)
            self._core = Certifier(root, skips_prose, replay)
            self._python = None
            self.feed = self._core.feed
        else:
            self._core = None
            self._python = PythonChecker(schema)
            self.feed = self._python.feed

    @property
    def accelerated(self) -> bool:
        """Whether the C certifier still reads this stream (False once the Python checker has
        taken over, or when the certifier isn't built)."""
        return self._core is not None and self._core.python is None

    @property
    def settled(self) -> bool:
        """Whether the certifier alone knows the answer so far to be complete and valid, so
        that ``finish`` skips the full validation (see ``views.Closing``)."""
        return self._core is not None and self._core.python is None and self._core.settle()

    def finish(self) -> Violation | None:
        """The answer is complete: its first violation, or None. The full validation decides,
        unless the certifier read the whole root value and decided every keyword it met
        (``settled``)."""
        if self._verdict is not None:
            return self._verdict[0]
        core = self._core
        found: Violation | None
        if core is None:
            assert self._python is not None
            found = self._python.finish()
        elif core.python is not None:  # handed over
            found = core.python.finish()
        elif core.settle():  # the certifier decided the end too (views.Closing)
            found = None
        elif core.done:  # certified to the end of the root value: what only the end decides
            start, end = core.root
            found = verdict(self._compiled, "".join(core.pieces)[start:end])
        else:  # ended early, or in a state the certifier leaves to Python: let it say how
            checker, _ = _replay(self._schema, core.pieces)
            found = checker.finish()
        if core is not None:
            core.finish_with(found)
        self._verdict = (found,)
        return found
