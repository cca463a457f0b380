"""Every regex in the mesh (routes' `match.regex`, header matchers' `regex`) is RE2:
checked here for validation, compiled here for the router.

RE2 matches in time linear in the input, so no pattern can make a request hold the
event loop the way a backtracking engine does on `(a+)+`. It is also the dialect
gRPC clients evaluate route regexes in (grpc-core src/core/util/matchers.cc builds
`RE2(pattern)` with default options and calls `RE2::FullMatch` on the raw bytes), so
a proxyless client and the proxy agree on every route. We use the same options:
UTF-8 mode over bytes. In that mode `\\d`, `\\w` and `\\s` are ASCII only (RE2 never
gives Perl classes Unicode meaning, unlike Python's `re` on str), `.` and
negated classes match one UTF-8 character, and a byte that is not valid UTF-8 is
matched only by `\\C`. Matching bytes is therefore the same as matching their
UTF-8 decoding, with no per-call decode.

Linear time is O(input × program): a huge program (`.*(?:.{0,20}a){10}.*z` is 1,831
instructions) spills RE2's DFA cache and falls back to its NFA, 200 ms on a 64 KiB
header value. Validation therefore also bounds the compiled program size, as Envoy
does with `re2.max_program_size` (its default error level is 100; ours leaves room
for counted repetitions such as a UUID, 87, or `\\w{1,64}`, 259). Unicode classes are
large programs (`\\pL` alone is ~1,200) and over the bound; gRPC paths and ASCII
metadata values never need them.
"""

from __future__ import annotations

from collections.abc import Callable

import re2
from re2 import _re2

MAX_PROGRAM_SIZE = 1000  # RE2 instructions; worst case measured ~8 ms on a 64 KiB value

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False   # errors are reported through validation, not RE2's stderr log
_OPTIONS.never_capture = True  # a fullmatch needs no groups; RE2 then skips finding their spans
_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH

Fullmatch = Callable[[bytes], "tuple[int, int] | None"]


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a mesh regex (RE2's own message), or None when it can."""
    try:
        compiled = _compile(pattern)
    except ValueError as e:
        return f"regex {pattern!r} is not valid RE2 syntax: {e}"
    size = compiled.ProgramSize()
    if size > MAX_PROGRAM_SIZE:
        return (f"regex {pattern!r} compiles to {size} RE2 instructions, more than {MAX_PROGRAM_SIZE}: "
                "simplify it (large counted repetitions such as .{0,200} cost the most)")
    return None


def compile_fullmatch(pattern: str) -> Fullmatch:
    """A function of a value (bytes, as off the wire) that returns the matched span
    when the whole value matches `pattern`, else None. `pattern` must be valid
    (see regex_problem); raises ValueError otherwise."""
    match = _compile(pattern).Match

    def fullmatch(value: bytes) -> tuple[int, int] | None:
        span = match(_ANCHOR_BOTH, value, 0, len(value))[0]
        return span if span[0] >= 0 else None

    return fullmatch


def _compile(pattern: str) -> _re2.RE2:
    # The binding's RE2 object directly: its Match costs ~0.5 us a call, the
    # re2 module's Python wrapper (match objects, span decoding) ~1.6 us.
    compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
    if not compiled.ok():
        raise ValueError(compiled.error().decode("utf-8", "replace"))
    return compiled
