"""Type stub of the C certifier (``_certify.c``)."""

from collections.abc import Callable
from typing import Any

from ..validation import Violation
from .views import View

class Certifier:
    def __init__(
        self,
        root: View,
        wants_container: bool,
        replay: Callable[[list[str]], tuple[Any, Violation | None]],
        /,
    ) -> None: ...
    def feed(self, text: str, /) -> Violation | None: ...
    def settle(self) -> bool: ...
    def finish_with(self, verdict: Violation | None, /) -> None: ...
    @property
    def python(self) -> Any: ...
    @property
    def done(self) -> bool: ...
    @property
    def root(self) -> tuple[int, int]: ...
    @property
    def pieces(self) -> list[str]: ...
