"""Route regexes for gRPC clients: the mesh's regexes are Python's (resources.proto,
`RouteMatch.regex`, `HeaderMatcher.regex`), and gRPC evaluates `safe_regex` with
RE2, full match (grpc-core src/core/util/matchers.cc). The two dialects share most
syntax but not all of it, and some shared syntax means different things, so a
pattern is not sent as written: it is parsed with Python's own parser and written
out again in RE2 syntax, and a pattern using something RE2 lacks is refused with
the reason.

- RE2 has no backreferences, lookaround, conditionals, atomic groups or possessive
  repeats (github.com/google/re2/wiki/Syntax): refused.
- Python's `\\Z` is RE2's `\\z`; `{,n}`, `(?P<name>...)`, `(?x)` and `\\uXXXX` are
  Python syntax that RE2 reads otherwise or not at all; they are rewritten.
- RE2 allows at most 1000 repetitions: more is refused.
- `\\d`, `\\w`, `\\s`, `\\b` are Unicode-aware in Python and ASCII-only in RE2. They
  agree on what gRPC matches: paths are ASCII and metadata values printable ASCII
  (gRPC over HTTP/2, "Custom-Metadata"), so they are kept as they are.

Once the mesh's regexes are RE2 themselves (the RE2 config issue), this module
becomes the identity and can go.
"""

from __future__ import annotations

import re
from re import _constants as c, _parser as parser  # the stdlib's own parser: read, never patched

MAX_REPEAT = 1000  # RE2's limit on a counted repetition

_CATEGORY = {c.CATEGORY_DIGIT: r"\d", c.CATEGORY_NOT_DIGIT: r"\D", c.CATEGORY_SPACE: r"\s",
             c.CATEGORY_NOT_SPACE: r"\S", c.CATEGORY_WORD: r"\w", c.CATEGORY_NOT_WORD: r"\W"}
_AT = {c.AT_BEGINNING: "^", c.AT_BEGINNING_STRING: r"\A", c.AT_END: "$", c.AT_END_STRING: r"\z",
       c.AT_BOUNDARY: r"\b", c.AT_NON_BOUNDARY: r"\B"}
_REFUSED = {c.GROUPREF: "backreferences", c.GROUPREF_EXISTS: "conditional groups", c.ASSERT: "lookaround",
            c.ASSERT_NOT: "lookaround", c.ATOMIC_GROUP: "atomic groups", c.POSSESSIVE_REPEAT: "possessive repeats"}
_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ")


class NotRe2(ValueError):
    """The pattern cannot be said in RE2 with the same meaning; the message says why."""


def to_re2(pattern: str) -> str:
    """`pattern` (Python syntax) written in RE2 syntax with the same meaning on
    ASCII input; raises NotRe2 when RE2 cannot express it."""
    try:
        parsed = parser.parse(pattern)
    except re.error as e:
        raise NotRe2(f"does not compile: {e}") from None
    return _flags(parsed.state.flags) + _sequence(parsed)


def _flags(flags: int, off: int = 0) -> str:
    on = "".join(letter for bit, letter in _FLAGS if flags & bit)
    neg = "".join(letter for bit, letter in _FLAGS if off & bit)
    return f"(?{on}{'-' + neg if neg else ''})" if on or neg else ""


def _sequence(items) -> str:
    return "".join(_node(op, av) for op, av in items)


def _node(op, av) -> str:
    if op in _REFUSED:
        raise NotRe2(f"uses {_REFUSED[op]}, which RE2 does not have")
    if op is c.LITERAL:
        return _literal(av)
    if op is c.NOT_LITERAL:
        return f"[^{_class_char(av)}]"
    if op is c.ANY:
        return "."
    if op is c.IN:
        return _class(av)
    if op is c.CATEGORY:
        return _CATEGORY[av]
    if op is c.AT:
        return _AT[av]
    if op is c.BRANCH:
        return "(?:" + "|".join(_sequence(alt) for alt in av[1]) + ")"
    if op is c.SUBPATTERN:
        _group, add, remove, items = av
        return f"(?{_flags(add, remove)[2:-1]}:{_sequence(items)})"
    if op in (c.MAX_REPEAT, c.MIN_REPEAT):
        return _repeat(op, *av)
    raise NotRe2(f"uses {op}, which this translation does not know")


def _repeat(op, low: int, high: int, items) -> str:
    if low > MAX_REPEAT or (high is not c.MAXREPEAT and high > MAX_REPEAT):
        raise NotRe2(f"repeats more than {MAX_REPEAT} times, RE2's limit")
    if high is c.MAXREPEAT:
        quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    elif (low, high) == (0, 1):
        quantifier = "?"
    else:
        quantifier = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
    lazy = "?" if op is c.MIN_REPEAT else ""
    return f"(?:{_sequence(items)}){quantifier}{lazy}"


def _class(items) -> str:
    parts, negate = [], ""
    for op, av in items:
        if op is c.NEGATE:
            negate = "^"
        elif op is c.LITERAL:
            parts.append(_class_char(av))
        elif op is c.RANGE:
            parts.append(f"{_class_char(av[0])}-{_class_char(av[1])}")
        elif op is c.CATEGORY:
            parts.append(_CATEGORY[av])
        else:
            raise NotRe2(f"uses {op} in a character class, which this translation does not know")
    return f"[{negate}{''.join(parts)}]"


def _literal(code: int) -> str:
    char = chr(code)
    if char in _PLAIN:
        return char
    return "\\" + char if char.isascii() and char.isprintable() else f"\\x{{{code:x}}}"


def _class_char(code: int) -> str:
    char = chr(code)
    return char if char in _PLAIN and char != " " else f"\\x{{{code:x}}}"
