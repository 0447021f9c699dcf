"""Check an answer against its schema while it streams in, and stop at the first definite violation.

``IncrementalChecker.feed`` takes the answer piece by piece and returns the first violation that
no continuation of the text so far could undo: bad JSON syntax, a value of the wrong type, a string
that can no longer become one of its enum values, a property name ``additionalProperties: false``
forbids, a string past ``maxLength``, an array past ``maxItems``, a number out of bounds, ... It
never reports one for a prefix of a valid answer. ``finish`` validates the complete value with the
compiled schema, which covers what only the end decides (``required``, ``minItems``, formats, ...),
unless the C certifier settled it (below).

Two halves:

* Views. The schema is compiled, lazily and once per schema, into ``View`` objects: one per set
  of subschemas applying at an instance position (``allOf`` parts and local ``$ref`` targets
  merged). A view holds the checks decidable while streaming and finds the views of its properties
  and items. Whatever it can't follow precisely (``anyOf``, ``oneOf``, ``if``, ``not``,
  ``$dynamicRef``, remote refs, ...) it leaves out: JSON Schema keywords are conjunctive, so fewer
  checks never raise a false alarm, and ``finish`` sees everything.
* The parser. A state machine over characters with one handler per state (a table), which
  carries only an unfinished token across pieces, so a stream costs O(n) in all. Between the
  members of a container a fast lane (``_scan``) takes a whole member or item with one regex
  match when it lies inside the piece; what it can't take (a token cut by the piece's end, an
  escape, an error) goes to the char-level handlers, which find exactly where a violation starts.

Leading whitespace and a ``` fence opener are skipped; when the root schema wants an object or an
array, so is any prose before the first ``{`` or ``[``. Text after the root value is ignored.

The package: ``views`` compiles a schema into those views (the keyword table), ``lexer`` holds
the token grammar (regexes, the number automaton, the parser's states) and ``checker`` the state
machine that walks the text and asks the views (``PythonChecker``). ``fast`` puts an optional C
certifier (``_certify.c``, built at install when a compiler is at hand) in front of it: it reads
the pieces ~20-50x faster, only ever certifies "nothing to report", and hands the stream over to
``PythonChecker`` (which replays what came so far) whenever it is unsure, so ``IncrementalChecker``
gives the Python checker's verdicts, built or not. When every position of the answer uses only
keywords the certifier decides exactly (``views.Closing``: types, enums of strings and literals,
bounds, lengths, item counts, ``required``, ``pattern``, ``format``, ...), it also answers the end
of the stream: it counted what only the end decides while reading and collected the strings
under ``pattern``/``format``, so ``finish`` checks those strings against just their keywords
instead of parsing and validating the document again. It only ever settles a valid answer; any
doubt, and every violation, goes to the full validation.
"""

from .checker import PythonChecker
from .fast import ACCELERATED, IncrementalChecker

__all__ = ["ACCELERATED", "IncrementalChecker", "PythonChecker"]
