"""config/regex.py: RE2 checking and the bytes fullmatch the router uses. The bytes
fast path must mean exactly what RE2 means on the decoded text (the public re2
module on str is the oracle), with RE2's ASCII-only Perl classes."""

from __future__ import annotations

import time

import pytest
import re2
from hypothesis import given, settings, strategies as st

from meshgrpc.config.regex import MAX_PROGRAM_SIZE, compile_fullmatch, regex_problem


@pytest.mark.parametrize("pattern, value, expected", [
    (r"\d+", b"0123456789", True),
    (r"\d+", "١٢٣".encode(), False),            # Arabic-Indic digits: \d is ASCII in RE2 (not in Python's re)
    (r"\w+", b"Abc_09", True),
    (r"\w+", "é".encode(), False),               # \w is ASCII too
    (r"\s", "\u00a0".encode(), False),           # so is \s: no-break space is not matched
    (r"\pL+", "é".encode(), None),               # Unicode classes exist but are over the program bound
    (r"caf\x{e9}", "café".encode(), True),       # RE2's escape for a code point
    ("café", "café".encode(), True),             # a non-ASCII literal matches its UTF-8 bytes
    ("caf.", "café".encode(), True),             # . is one UTF-8 character, not one byte
    ("caf..", "café".encode(), False),
    ("[^a]", "é".encode(), True),
    (".*", b"\xff", False),                      # invalid UTF-8 is matched by nothing but \C
    (r"\C", b"\xff", True),
    ("a.b", b"a\nb", False),                     # . does not match newline (RE2 and re agree)
    ("(?i)straße", "STRASSE".encode(), False),   # simple case folding only, as RE2
    ("(?i)é", "É".encode(), True),
    ("/r/(a+)+", b"/r/aaa", True),
])
def test_re2_meaning_over_bytes(pattern, value, expected):
    if expected is None:
        assert "RE2 instructions" in regex_problem(pattern)
        return
    assert regex_problem(pattern) is None
    assert (compile_fullmatch(pattern)(value) is not None) is expected


def test_fullmatch_returns_the_span_or_none():
    match = compile_fullmatch("/a.*b")
    assert match(b"/a123b") == (0, 6)
    assert match(b"/a123bc") is None
    assert match(b"x/a123b") is None      # anchored at both ends
    assert compile_fullmatch("")(b"") == (0, 0)


_ALPHABET = st.sampled_from(["a", "b", "é", "ß", "/", "1", "-", "\n", "Ω", "\u00a0", "😀"])
_PATTERNS = ["/[ab]+/.*", r"\w+", r"\d*", "[^/]+", "(a|é)+ß?", ".*Ω.", r"\S+", "[[:alpha:]]*", "(?i)A+É*",
             r"[a-zé-ÿ]+", ".{2,4}", r"\x{1F600}?/"]


@settings(max_examples=300, deadline=None)
@given(pattern=st.sampled_from(_PATTERNS), text=st.text(_ALPHABET, max_size=12))
def test_bytes_fast_path_agrees_with_re2_on_text(pattern, text):
    oracle = re2.fullmatch(pattern, text) is not None
    assert (compile_fullmatch(pattern)(text.encode()) is not None) is oracle


@pytest.mark.parametrize("pattern, words", [
    ("/(a", "is not valid RE2 syntax: missing ): /(a"),
    (r"(a)\1", r"invalid escape sequence: \1"),
    ("(?=a)", "invalid perl operator: (?="),
    ("(?<!a)b", "invalid perl operator: (?<"),
    ("a{1001}", "invalid repetition size: {1001}"),
    (".*(?:.{0,20}a){10}.*z", f"compiles to 1831 RE2 instructions, more than {MAX_PROGRAM_SIZE}"),
])
def test_problems_carry_re2s_message(pattern, words):
    problem = regex_problem(pattern)
    assert problem is not None and words in problem, problem
    assert repr(pattern) in problem


def test_invalid_pattern_does_not_compile():
    with pytest.raises(ValueError, match="missing \\)"):
        compile_fullmatch("/(a")


def test_backtracking_shapes_match_in_linear_time():
    """The issue's evil route: Python's re took 3.2 s on a shorter path."""
    match = compile_fullmatch("/r/(a+)+")
    evil = b"/r/" + b"a" * 10_000 + b"!"
    started = time.perf_counter()
    assert match(evil) is None
    assert time.perf_counter() - started < 0.010
