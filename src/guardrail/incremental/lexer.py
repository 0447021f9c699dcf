"""The token grammar of the incremental parser: regexes, the number automaton, the states."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, cast

# Matchers of patterns that match every string (a possibly empty run): their match is never None.
_Run = Callable[[str, int], "re.Match[str]"]
WS: Final = cast(_Run, re.compile(r"[ \t\n\r]*").match)
WS_CHARS: Final = " \t\n\r"
OPENER: Final = re.compile(r"[{\[]").search
PLAIN: Final = cast(_Run, re.compile(r'[^"\\\x00-\x1f]*').match)  # string chars needing no care
KEY_COLON: Final = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:').match  # a plain key, its ':'
SIMPLE_STRING: Final = re.compile(r'"([^"\\\x00-\x1f]*)"').match  # a string without escapes
_WS_RUN: Final = r"[ \t\n\r]*"
_VALUE_TOKEN: Final = (  # groups: a string without escapes, a number, a literal, an opener
    r'(?:"([^"\\\x00-\x1f]*)"'
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?=[^0-9.eE+-])"
    r"|(true|false|null)"
    r"|([{\[]))"
)
# The fast lane's tokens: a whole member (`, "key": value`) or item (`, value`), the comma
# optional (there is none before the first).
# (Each whitespace run is followed by a distinct character: no quadratic backtracking.)
MEMBER: Final = re.compile(
    rf'{_WS_RUN}(?:(,){_WS_RUN})?"([^"\\\x00-\x1f]*)"{_WS_RUN}:{_WS_RUN}{_VALUE_TOKEN}'
).match
ITEM: Final = re.compile(rf"{_WS_RUN}(?:(,){_WS_RUN})?{_VALUE_TOKEN}").match
ESCAPE: Final = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})').match
# At a backslash: the longest proper prefix of an escape there.
ESCAPE_START: Final = cast(_Run, re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?").match)
HIGH_SURROGATE_END: Final = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}\Z").match
NUMBER_TOKEN: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").match
NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
INFO_STRING: Final = cast(_Run, re.compile(r"[\w+.-]*", re.ASCII).match)  # a fence's info string
LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
LOW_SURROGATE: Final = frozenset("cdefCDEF")


def _number_steps() -> dict[tuple[int, str], int]:
    """The number grammar as a DFA: (state, char) -> state. Accepting states: NUMBER_ENDS."""
    digits, nonzero = "0123456789", "123456789"
    table = {
        0: {"-": 1, "0": 2, **dict.fromkeys(nonzero, 3)},  # start
        1: {"0": 2, **dict.fromkeys(nonzero, 3)},  # after '-'
        2: {".": 4, "e": 6, "E": 6},  # a leading 0
        3: {".": 4, "e": 6, "E": 6, **dict.fromkeys(digits, 3)},  # integer digits
        4: dict.fromkeys(digits, 5),  # after '.'
        5: {"e": 6, "E": 6, **dict.fromkeys(digits, 5)},  # fraction digits
        6: {"+": 7, "-": 7, **dict.fromkeys(digits, 8)},  # after 'e'
        7: dict.fromkeys(digits, 8),  # after the exponent's sign
        8: dict.fromkeys(digits, 8),  # exponent digits
    }
    return {(state, char): to for state, moves in table.items() for char, to in moves.items()}


NUMBER_STEPS: Final = _number_steps()
NUMBER_ENDS: Final = frozenset({2, 3, 5, 8})

# The first character of a value -> its kind.
VALUE_START: Final = {
    "{": "object",
    "[": "array",
    '"': "string",
    "t": "boolean",
    "f": "boolean",
    "n": "null",
    **dict.fromkeys("-0123456789", "number"),
}
LITERALS: Final = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}

# Parser states (indexes into the handler table).
(
    PROSE,  # before the root, skipping anything up to the first '{' or '['
    LEAD,  # before the root: whitespace, at most one ``` fence opener
    TICKS,  # inside a ``` fence opener
    TAG,  # after a ``` fence opener: its info string (json, ...)
    VALUE,  # a value is due
    FIRST_ITEM,  # after '['
    FIRST_KEY,  # after '{'
    KEY,  # after ',' in an object
    COLON,  # after a key
    AFTER,  # after a value inside a container
    STRING,  # inside a string (a value or a key)
    NUMBER,  # inside a number
    LITERAL,  # inside true / false / null
    DONE,  # the root value is complete; the rest is ignored
) = range(14)
