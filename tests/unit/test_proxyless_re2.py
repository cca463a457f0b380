"""re2_dialect: Python route regexes written out in RE2 syntax with the same
meaning, or refused with the reason. Each rewrite is checked by matching with
Python's re against the RE2 text (the syntax both read the same way)."""

from __future__ import annotations

import re

import pytest

from meshgrpc.proxyless.re2_dialect import NotRe2, to_re2

SAME = [
    (r"/helloworld\.Greeter/Say.*", ["/helloworld.Greeter/SayHello"], ["/helloworld.Greeter/Bye"]),
    (r"/a/[0-9]{,3}", ["/a/", "/a/123"], ["/a/1234"]),  # {,n} is RE2's literal text: rewritten
    (r"(?P<svc>[a-z]+)/x", ["abc/x"], ["ABC/x"]),  # named groups: plain groups (a fullmatch needs none)
    (r"(?i)abc", ["ABC", "abc"], ["abd"]),
    (r"(?x) a  b  # comment", ["ab"], ["a b"]),  # verbose: whitespace gone
    (r"v\d+-(?:beta|rc)?", ["v12-", "v1-beta"], ["v-rc"]),
    (r"[^a-z\-]x", ["Ax", "9x"], ["-x", "ax"]),
    (r"a+?b", ["aab"], ["b"]),
]


@pytest.mark.parametrize("pattern,matching,other", SAME, ids=[c[0] for c in SAME])
def test_rewrite_matches_what_the_python_pattern_matches(pattern, matching, other):
    rewritten = as_python(to_re2(pattern))
    for text in matching + other:
        assert bool(re.fullmatch(pattern, text)) == bool(re.fullmatch(rewritten, text)), text
    assert all(re.fullmatch(pattern, t) for t in matching) and not any(re.fullmatch(pattern, t) for t in other)


def as_python(re2_text: str) -> str:
    """RE2 text in Python's spelling, for the two escapes that differ: \\x{HH} and \\z."""
    text = re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: "\\U%08x" % int(m[1], 16), re2_text)
    return text.replace(r"\z", r"\Z")


def test_end_of_text_is_written_as_re2_spells_it():
    assert to_re2(r"a\Z") == r"a\z"  # RE2 has no \Z


def test_non_ascii_literal_is_a_hex_escape():
    assert to_re2("é") == r"\x{e9}"  # RE2 has no \u escapes


@pytest.mark.parametrize("pattern,why", [
    (r"(a)\1", "backreferences"), (r"a(?=b)", "lookaround"), (r"(?<!a)b", "lookaround"),
    (r"(a)?(?(1)b|c)", "conditional groups"), (r"(?>a+)", "atomic groups"), (r"a++", "possessive repeats"),
    (r"a{1001}", "more than 1000 times"), (r"(", "does not compile"),
])
def test_what_re2_lacks_is_refused_with_the_reason(pattern, why):
    with pytest.raises(NotRe2, match=re.escape(why)):
        to_re2(pattern)
