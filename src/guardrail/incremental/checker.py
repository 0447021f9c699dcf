"""The incremental parser: a state machine over characters that asks the views as it goes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from ..validation import CompiledSchema, Schema, Violation, compile_schema, json_pointer
from .lexer import (
    AFTER,
    COLON,
    DONE,
    ESCAPE,
    ESCAPE_START,
    FIRST_ITEM,
    FIRST_KEY,
    HIGH_SURROGATE_END,
    INFO_STRING,
    ITEM,
    KEY,
    KEY_COLON,
    LEAD,
    LETTERS,
    LITERAL,
    LITERALS,
    LOW_SURROGATE,
    MEMBER,
    NUMBER,
    NUMBER_CHARS,
    NUMBER_ENDS,
    NUMBER_STEPS,
    NUMBER_TOKEN,
    OPENER,
    PLAIN,
    PROSE,
    SIMPLE_STRING,
    STRING,
    TAG,
    TICKS,
    VALUE,
    VALUE_START,
    WS,
    WS_CHARS,
)
from .views import BOUND_TEXT, KINDS, SCALARS, StringRules, View, clip, root_view, scalar_keys


class _Stop(Exception):
    def __init__(self, violation: Violation) -> None:
        self.violation = violation


class _Frame:
    """An open object or array: its view, and which member or item is being read."""

    __slots__ = ("child", "index", "is_object", "key", "key_refusal", "key_rules", "seen", "view")

    def __init__(self, view: View, is_object: bool) -> None:
        self.view = view
        self.is_object = is_object
        self.index = 0
        self.key = ""
        self.child: View = view
        self.seen: set[str] | None = None
        self.key_rules: StringRules | None = None
        self.key_refusal: tuple[str, str] | None = None
        if is_object:
            self.key_rules, self.key_refusal = view.key_rules()
            if view.max_properties is not None:
                self.seen = set()


class PythonChecker:
    """Checks one streamed answer against ``schema``: ``feed`` each piece, then ``finish``.

    Both return the first definite violation, or None; once one is found every later call returns
    it again. The schema is compiled (and cached) by ``compile_schema``, whose ``InvalidSchema``
    and ``RemoteRefRejected`` the constructor raises; its views are built once per schema and
    shared. A checker holds one stream's state: one per stream.
    """

    __slots__ = (
        "_compiled",
        "_escape",
        "_exact",
        "_fenced",
        "_finished",
        "_handlers",
        "_is_key",
        "_length",
        "_next",
        "_number_end",
        "_number_state",
        "_offset",
        "_openers",
        "_raw",
        "_result",
        "_root_end",
        "_root_start",
        "_rules",
        "_stack",
        "_state",
        "_tagged",
        "_takers",
        "_text",
        "_text_base",
        "_ticks",
        "_token",
        "_value",
        "_word",
        "_word_at",
    )

    def __init__(self, schema: Schema) -> None:
        self._compiled = compile_schema(schema)
        root = root_view(self._compiled)
        self._next = root  # the view of the value due next
        self._value = root  # the view of the scalar being read
        self._stack: list[_Frame] = []
        self._state = PROSE if wants_container(root) else LEAD
        self._offset = 0  # characters fed before the current piece
        self._text: list[str] = []  # the pieces fed since the root value started
        self._text_base = 0  # the offset of self._text[0]
        self._root_start = self._root_end = -1
        self._result: Violation | None = None
        self._finished = False
        self._fenced = self._tagged = False
        self._ticks = 0
        # the string being read
        self._rules: StringRules | None = None
        self._length = 0
        self._raw: list[str] | None = None
        self._escape = ""  # an escape cut by the end of a piece
        self._is_key = False
        # the number or literal being read
        self._token: list[str] = []
        self._number_state = 0
        self._number_end = -1  # the offset after the number's last whole prefix
        self._word: tuple[str, bool | None] = ("", None)
        self._word_at = 0
        self._handlers: tuple[Callable[[str, int], int], ...] = (
            self._prose,
            self._lead,
            self._fence_ticks,
            self._fence_tag,
            self._value_start,
            self._scan,  # FIRST_ITEM
            self._scan,  # FIRST_KEY
            self._key,
            self._colon,
            self._scan,  # AFTER
            self._string,
            self._number,
            self._literal,
            self._done,
        )
        # The char-level handlers of the states the fast lane (``_scan``) serves.
        self._exact: dict[int, Callable[[str, int], int]] = {
            FIRST_ITEM: self._first_item,
            FIRST_KEY: self._first_key,
            AFTER: self._after,
        }
        self._takers = (self._take_string, self._take_number, self._take_literal, self._take_opener)
        self._openers: dict[str, Callable[[str, int, View], int]] = {
            "object": self._open_object,
            "array": self._open_array,
            "string": self._open_string,
            "number": self._open_number,
            "boolean": self._open_literal,
            "null": self._open_literal,
        }

    # -- public -------------------------------------------------------------------------------

    def feed(self, text: str) -> Violation | None:
        """Read the next piece of the answer; the first definite violation so far, or None."""
        if self._result is not None or self._finished:
            return self._result
        if self._state == DONE:
            self._offset += len(text)
            return None
        if self._root_start >= 0:
            self._text.append(text)
        handlers = self._handlers
        i, n = 0, len(text)
        try:
            while i < n:
                i = handlers[self._state](text, i)
        except _Stop as stop:
            self._result = stop.violation
        self._offset += n
        return self._result

    def finish(self) -> Violation | None:
        """The answer is complete: validate it in full; its first violation, or None."""
        if self._finished or self._result is not None:
            self._finished = True
            return self._result
        self._finished = True
        try:
            if self._state == NUMBER:
                self._root_number()
            self._result = self._validate() if self._state == DONE else self._incomplete()
        except _Stop as stop:
            self._result = stop.violation
        return self._result

    # -- verdicts -----------------------------------------------------------------------------

    def _validate(self) -> Violation | None:
        text = "".join(self._text)[
            self._root_start - self._text_base : self._root_end - self._text_base
        ]
        return verdict(self._compiled, text)

    def _incomplete(self) -> Violation:
        if self._root_start < 0:
            return Violation("", "json", "the answer ended before any JSON value")
        return Violation(
            "",
            "json",
            f"the answer ended early: its JSON is incomplete after {self._offset} "
            f"characters (at {self._path(len(self._stack)) or 'the root'})",
        )

    def _path(self, depth: int) -> str:
        return json_pointer(f.key if f.is_object else f.index for f in self._stack[:depth])

    def _fail(self, depth: int, keyword: str, message: str) -> NoReturn:
        raise _Stop(Violation(self._path(depth), keyword, message))

    def _syntax(self, text: str, at: int, expected: str) -> NoReturn:
        raise _Stop(
            Violation(
                "",
                "json",
                f"invalid JSON at character {self._offset + at}: expected {expected}, "
                f"found {text[at]!r}",
            )
        )

    # -- before the root value ----------------------------------------------------------------

    def _prose(self, text: str, i: int) -> int:
        found = OPENER(text, i)
        if found is None:
            return len(text)
        self._state = VALUE
        return found.start()

    def _lead(self, text: str, i: int) -> int:
        i = WS(text, i).end()
        if i < len(text):
            if text[i] == "`" and not self._fenced:
                self._fenced = True
                self._state = TICKS
            else:
                self._state = VALUE
        return i

    def _fence_ticks(self, text: str, i: int) -> int:
        while i < len(text) and self._ticks < 3:
            if text[i] != "`":
                self._syntax(text, i, "a ``` fence or a JSON value")
            self._ticks += 1
            i += 1
        if self._ticks == 3:
            self._state = TAG
        return i

    def _fence_tag(self, text: str, i: int) -> int:
        if not self._tagged:
            if text[i] not in LETTERS:  # no info string: the value (or whitespace) follows
                self._state = LEAD
                return i
            self._tagged = True
        end = INFO_STRING(text, i).end()
        if end < len(text):
            self._state = LEAD
        return end

    # -- values -------------------------------------------------------------------------------

    def _value_start(self, text: str, i: int) -> int:
        c = text[i]
        if c in WS_CHARS:
            i = WS(text, i).end()
            if i == len(text):
                return i
            c = text[i]
        kind = VALUE_START.get(c)
        if kind is None:
            self._syntax(text, i, "a value")
        view = self._next
        if not self._stack:
            self._root_start = self._offset + i
            self._text_base = self._offset
            self._text = [text]
        refused = view.rejects.get(kind)
        if refused is not None:
            self._fail(len(self._stack), *refused)
        return self._openers[kind](text, i, view)

    def _scan(self, text: str, i: int) -> int:
        """The fast lane, between the members or items of a container.

        One regex match takes a whole member or item when it lies inside this piece and holds no
        escape; a token cut by the piece's end, an escape or an error goes to the char-level
        handler of the state, which finds exactly where it fails.
        """
        stack, n = self._stack, len(text)
        first = self._state != AFTER
        while i < n:
            frame = stack[-1]
            found = (MEMBER if frame.is_object else ITEM)(text, i)
            if found is None or (found[1] is None) != first:
                i = _skip_space(text, i)
                if i == n or text[i] != ("}" if frame.is_object else "]"):
                    return self._exact[self._state](text, i) if i < n else i
                i += 1
                stack.pop()
                self._end_value(self._offset + i)
                if not stack:
                    return i
                first = False
                continue
            last = found.lastindex or 0
            if frame.is_object:
                if frame.key_refusal is not None:
                    self._fail(len(stack) - 1, *frame.key_refusal)
                self._rules = frame.key_rules
                self._key_done(found[2])
                view, kind = frame.child, last - 3
            else:
                if not first:
                    frame.index += 1
                self._count_item(frame)
                view, kind = frame.view.item(frame.index), last - 2
            i = found.end()
            self._takers[kind](found[last], view, i)
            first = self._state != AFTER
        return i

    def _count_item(self, frame: _Frame) -> None:
        limit = frame.view.max_items
        if limit is not None and frame.index >= limit:
            self._fail(len(self._stack) - 1, "maxItems", f"the array has more than {limit} items")

    def _take_string(self, content: str, view: View, end: int) -> None:
        """A whole string without escapes: ``content`` is what's between its quotes."""
        refused = view.rejects.get("string")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        if view.strings is not None:
            self._string_done(view.strings, content, len(self._stack))
        self._end_value(self._offset + end)

    def _take_number(self, token: str, view: View, end: int) -> None:
        refused = view.rejects.get("number")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._value = view
        self._number_done(token, self._offset + end)

    def _take_literal(self, token: str, view: View, end: int) -> None:
        self._word = LITERALS[token[0]]
        refused = view.rejects.get(VALUE_START[token[0]])
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._value = view
        self._literal_done(self._offset + end)

    def _take_opener(self, token: str, view: View, end: int) -> None:
        is_object = token == "{"
        refused = view.rejects.get("object" if is_object else "array")
        if refused is not None:
            self._fail(len(self._stack), *refused)
        self._stack.append(_Frame(view, is_object))
        self._state = FIRST_KEY if is_object else FIRST_ITEM

    def _end_value(self, end: int) -> None:
        """A value ended just before offset ``end`` (of the whole answer)."""
        if self._stack:
            self._state = AFTER
        else:
            self._state = DONE
            self._root_end = end

    def _open_object(self, text: str, i: int, view: View) -> int:
        self._stack.append(_Frame(view, True))
        self._state = FIRST_KEY
        return i + 1

    def _open_array(self, text: str, i: int, view: View) -> int:
        self._stack.append(_Frame(view, False))
        self._state = FIRST_ITEM
        return i + 1

    def _close(self, i: int) -> int:
        self._stack.pop()
        self._end_value(self._offset + i + 1)
        return i + 1

    def _first_item(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        c, frame = text[i], self._stack[-1]
        if c == "]":
            return self._close(i)
        if c in VALUE_START:
            self._count_item(frame)
        self._next = frame.view.item(0)
        self._state = VALUE
        return i

    def _after(self, text: str, i: int) -> int:
        c = text[i]
        if c in WS_CHARS:
            i = WS(text, i).end()
            if i == len(text):
                return i
            c = text[i]
        frame = self._stack[-1]
        if c == ",":
            if frame.is_object:
                self._state = KEY
                return self._key(text, i + 1) if i + 1 < len(text) else i + 1
            frame.index += 1
            self._count_item(frame)
            self._next = frame.view.item(frame.index)
            self._state = VALUE
            return self._value_start(text, i + 1) if i + 1 < len(text) else i + 1
        if c == ("}" if frame.is_object else "]"):
            return self._close(i)
        self._syntax(text, i, "',' or '}'" if frame.is_object else "',' or ']'")

    # -- objects ------------------------------------------------------------------------------

    def _first_key(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] == "}":
            return self._close(i)
        if text[i] == '"':
            return self._open_key(text, i)
        self._syntax(text, i, "a property name or '}'")

    def _key(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] == '"':
            return self._open_key(text, i)
        self._syntax(text, i, "a property name in double quotes")

    def _open_key(self, text: str, i: int) -> int:
        frame = self._stack[-1]
        if frame.key_refusal is not None:
            self._fail(len(self._stack) - 1, *frame.key_refusal)
        rules = self._rules = frame.key_rules
        found = KEY_COLON(text, i)
        if found is None:  # the key goes on past this piece, or has escapes: read it char by char
            self._begin_string(rules, True)
            return i + 1
        self._key_done(found.group(1))
        self._next = frame.child
        self._state = VALUE
        end = found.end()
        return self._value_start(text, end) if end < len(text) else end

    def _key_done(self, key: str) -> None:
        """Check a complete key (the rules in ``self._rules``) and find its value's view."""
        frame = self._stack[-1]
        depth = len(self._stack) - 1
        rules = self._rules
        if rules is not None:
            self._string_done(rules, key, depth)
        seen, limit = frame.seen, frame.view.max_properties
        if seen is not None and limit is not None and key not in seen:
            seen.add(key)
            if len(seen) > limit:
                self._fail(depth, "maxProperties", f"the object has more than {limit} properties")
        child = frame.view.child(key)
        if child is None:
            self._fail(
                depth,
                "additionalProperties",
                f"Additional properties are not allowed ({clip(key)!r} was unexpected)",
            )
        frame.key = key
        frame.child = child

    def _colon(self, text: str, i: int) -> int:
        i = _skip_space(text, i)
        if i == len(text):
            return i
        if text[i] != ":":
            self._syntax(text, i, "':'")
        self._next = self._stack[-1].child
        self._state = VALUE
        return self._value_start(text, i + 1) if i + 1 < len(text) else i + 1

    # -- strings ------------------------------------------------------------------------------

    def _open_string(self, text: str, i: int, view: View) -> int:
        rules = view.strings
        found = SIMPLE_STRING(text, i)
        if found is None:  # the string goes on past this piece, or has escapes
            self._begin_string(rules, False)
            return i + 1
        if rules is not None:
            self._string_done(rules, found.group(1), len(self._stack))
        end = found.end()
        self._end_value(self._offset + end)
        return end

    def _string_done(self, rules: StringRules, text: str, depth: int) -> None:
        """Check a complete string (a value, or a key when ``depth`` is its object's)."""
        if 0 <= rules.max_length < len(text):
            self._fail(
                depth,
                rules.length_keyword,
                f"the string is longer than {rules.max_length} characters",
            )
        for choice in rules.choices:
            if text not in choice.members:
                self._fail(depth, choice.keyword, choice.refusal(text, False))

    def _begin_string(self, rules: StringRules | None, is_key: bool) -> None:
        self._rules = rules
        self._is_key = is_key
        self._length = 0
        self._raw = [] if is_key or (rules is not None and rules.choices) else None
        self._state = STRING

    def _string(self, text: str, i: int) -> int:
        if self._escape:
            i = self._resume_escape(text, i)
            if self._escape:
                return i
        rules, raw, n = self._rules, self._raw, len(text)
        limit = -1 if rules is None else rules.max_length
        while True:
            end = PLAIN(text, i).end()
            if end > i:
                if raw is not None:
                    raw.append(text[i:end])
                if limit >= 0:
                    self._length += end - i
                    if self._length > limit:
                        self._too_long()
            if end == n:
                break
            c = text[end]
            if c == '"':
                return self._end_string(text, end + 1)
            if c != "\\":
                self._syntax(text, end, "an escape sequence instead of a control character")
            i = self._escape_at(text, end)
            if self._escape:
                break
        if rules is not None and rules.choices:
            self._check_prefix(rules)
        return n

    def _escape_at(self, text: str, at: int) -> int:
        found = ESCAPE(text, at)
        if found is not None:
            self._escaped(found.group())
            return found.end()
        end = ESCAPE_START(text, at).end()
        if end < len(text):
            self._syntax(text, end, "a valid escape sequence")
        self._escape = text[at:]
        return end

    def _resume_escape(self, text: str, i: int) -> int:
        pending = self._escape
        joined = pending + text[i : i + 6]
        found = ESCAPE(joined, 0)
        if found is not None:
            self._escape = ""
            self._escaped(found.group())
            return i + found.end() - len(pending)
        end = ESCAPE_START(joined, 0).end()
        if end < len(joined):
            self._syntax(text, i + end - len(pending), "a valid escape sequence")
        self._escape = joined  # still unfinished: the piece was too short
        return len(text)

    def _escaped(self, escape: str) -> None:
        if self._raw is not None:
            self._raw.append(escape)
        rules = self._rules
        if rules is not None and rules.max_length >= 0:
            # A low surrogate escape completes a pair: the pair is one character.
            if not (escape[1] == "u" and escape[2] in "dD" and escape[3] in LOW_SURROGATE):
                self._length += 1
            if self._length > rules.max_length:
                self._too_long()

    def _string_depth(self) -> int:
        return len(self._stack) - 1 if self._is_key else len(self._stack)

    def _too_long(self) -> NoReturn:
        rules = self._rules
        assert rules is not None
        self._fail(
            self._string_depth(),
            rules.length_keyword,
            f"the string is longer than {rules.max_length} characters",
        )

    def _decode(self, raw: str) -> str:
        if "\\" not in raw:
            return raw
        try:
            decoded: str = orjson.loads('"' + raw + '"')
        except orjson.JSONDecodeError as exc:  # a lone surrogate
            self._fail(self._string_depth(), "json", f"the answer is not JSON: {exc}")
        return decoded

    def _check_prefix(self, rules: StringRules) -> None:
        """Fail when the string read so far can't begin any of the choices left to it."""
        assert self._raw is not None
        raw = "".join(self._raw)
        self._raw[:] = [raw]
        if HIGH_SURROGATE_END(raw, max(len(raw) - 5, 0)) is not None:
            head = raw[:-5]
            if (len(head) - len(head.rstrip("\\"))) % 2:  # "\\uD83D" is no escape
                raw = raw[:-6]  # a high surrogate: its low surrogate may follow
        decoded: str | None = None
        for choice in rules.choices:
            # Over 12 raw characters per decoded one are impossible (a pair of \u escapes).
            if len(raw) <= 12 * (choice.longest + 1):
                if decoded is None:
                    decoded = self._decode(raw)
                if choice.admits_prefix(decoded):
                    continue
            self._fail(
                self._string_depth(),
                choice.keyword,
                choice.refusal(raw if decoded is None else decoded, True),
            )

    def _end_string(self, piece: str, end: int) -> int:
        raw = self._raw
        if raw is None:
            self._end_value(self._offset + end)
            return end
        text = self._decode("".join(raw))
        if self._is_key:
            self._key_done(text)
            self._state = COLON
            return self._colon(piece, end) if end < len(piece) else end
        if self._rules is not None:
            self._string_done(self._rules, text, len(self._stack))
        self._end_value(self._offset + end)
        return end

    # -- numbers and literals -----------------------------------------------------------------

    def _open_number(self, text: str, i: int, view: View) -> int:
        self._value = view
        found = NUMBER_TOKEN(text, i)
        if found is not None:
            end = found.end()
            if end < len(text) and text[end] not in NUMBER_CHARS:
                self._number_done(text[i:end], self._offset + end)
                return end
        self._token = []
        self._number_state = 0
        self._number_end = -1
        self._state = NUMBER
        return i

    def _number(self, text: str, i: int) -> int:
        state, steps, n, j = self._number_state, NUMBER_STEPS, len(text), i
        while j < n:
            moved = steps.get((state, text[j]))
            if moved is None:
                break
            state = moved
            j += 1
            if state in NUMBER_ENDS:
                self._number_end = self._offset + j
        self._token.append(text[i:j])
        if j == n:
            self._number_state = state
            return n
        if state in NUMBER_ENDS:
            self._number_done("".join(self._token), self._offset + j)
        elif not self._root_number():
            self._syntax(text, j, "a digit")
        return j

    def _root_number(self) -> bool:
        """At the root, a number that breaks off ("1." then "x") ends where it last was whole,
        and what follows is text after the value; elsewhere it is a syntax error."""
        if self._stack or self._number_end < 0:
            return False
        token = "".join(self._token)[: self._number_end - self._root_start]
        self._number_done(token, self._number_end)
        return True

    def _number_done(self, token: str, end: int) -> None:
        view = self._value
        if view.numeric or len(token) > 300 or "e" in token or "E" in token:
            try:
                value = orjson.loads(token)
            except orjson.JSONDecodeError as exc:
                self._fail(len(self._stack), "json", f"the number {clip(token)} is {exc}")
            if view.numeric:
                self._check_number(view, value)
        self._end_value(end)

    def _check_number(self, view: View, value: int | float) -> None:
        depth = len(self._stack)
        if view.integer and isinstance(value, float) and not value.is_integer():
            self._fail(depth, "type", f'{value} is not of type "integer"')
        for keyword, limit, beyond in view.bounds:
            if beyond(value, limit) and _beyond_as_floats(beyond, value, limit):
                self._fail(depth, keyword, f"{value} is {BOUND_TEXT[keyword]} {limit}")
        self._check_scalar(view, value)

    def _check_scalar(self, view: View, value: Any) -> None:
        exact, approx = scalar_keys(value)
        for keyword, allowed in view.scalars:
            if exact not in allowed and approx not in allowed:
                text = orjson.dumps(value).decode()
                self._fail(len(self._stack), keyword, f"{text} is not one of the {keyword} values")

    def _open_literal(self, text: str, i: int, view: View) -> int:
        self._value = view
        self._word = LITERALS[text[i]]
        word = self._word[0]
        if text.startswith(word, i):
            self._literal_done(self._offset + i + len(word))
            return i + len(word)
        self._word_at = 0
        self._state = LITERAL
        return i

    def _literal(self, text: str, i: int) -> int:
        word, at, n = self._word[0], self._word_at, len(text)
        while at < len(word):
            if i == n:
                self._word_at = at
                return n
            if text[i] != word[at]:
                self._syntax(text, i, repr(word[at]) + f" (of {word})")
            at += 1
            i += 1
        self._literal_done(self._offset + i)
        return i

    def _literal_done(self, end: int) -> None:
        view = self._value
        if view.scalars:
            self._check_scalar(view, self._word[1])
        self._end_value(end)

    def _done(self, text: str, i: int) -> int:
        return len(text)


def wants_container(root: View) -> bool:
    """Whether the root must be an object or an array (so prose before it can be skipped)."""
    return root.rejects.keys() >= SCALARS and len(root.rejects) < len(KINDS)


def verdict(compiled: CompiledSchema, text: str) -> Violation | None:
    """The first violation of the complete root value ``text``, or None."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Violation("", "json", f"the answer is not JSON: {exc}")
    if compiled.is_valid(value):
        return None
    errors = compiled.errors(value)
    return errors[0] if errors else Violation("", "schema", "the answer fails its schema")


def _skip_space(text: str, i: int) -> int:
    """The index of the first non-whitespace character at or after ``i`` (or ``len(text)``)."""
    return WS(text, i).end() if text[i] in WS_CHARS else i


def _beyond_as_floats(beyond: Callable[[Any, Any], bool], value: Any, limit: Any) -> bool:
    """The same verdict in double precision (so no validator's rounding can disagree)."""
    try:
        return beyond(float(value), float(limit))
    except OverflowError:
        return False
