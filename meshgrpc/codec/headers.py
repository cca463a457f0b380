"""Which decoded header blocks are malformed (RFC 9113 §8.1.1, §8.2, §8.3): a pure
function of the field list and what the block is (request, response, trailers).

`validate(headers, kind)` returns None for a well-formed block, else the reason
(one of the constants below). The decoder caches the verdict with the decoded
block (hpack.Decoder), so a repeated block is checked once. A malformed message
is a stream error of type PROTOCOL_ERROR (§8.1.1): the connection resets that
stream and the caller never sees it.
"""

from __future__ import annotations

import re

REQUEST = 0
RESPONSE = 1
TRAILERS = 2

BAD_NAME = "field name with a character not allowed (uppercase, control, space, colon or non-ASCII)"
EMPTY_NAME = "empty field name"
BAD_VALUE = "field value with NUL, CR or LF, or leading or trailing whitespace"
CONNECTION_SPECIFIC = "connection-specific field"
BAD_TE = "te other than trailers"
PSEUDO_AFTER_REGULAR = "pseudo-header field after a regular field"
UNKNOWN_PSEUDO = "pseudo-header field not defined for this message"
DUPLICATE_PSEUDO = "pseudo-header field repeated"
EMPTY_PSEUDO = "empty pseudo-header field"
MISSING_PSEUDO = "required pseudo-header field missing"
CONNECT_WITH_PATH = "CONNECT request with :scheme or :path"
BAD_STATUS = ":status is not three digits"

# §8.2.1: a name is lowercase visible ASCII without a colon (pseudo-header
# names are checked whole against the defined ones).
_BAD_NAME_CHAR = re.compile(rb"[^\x21-\x39\x3b-\x40\x5b-\x7e]")
# §8.2.1: no NUL, CR or LF anywhere; no SP or HTAB first or last.
_BAD_VALUE_CHAR = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
# §8.2.2
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                  b"transfer-encoding", b"upgrade"})
_PSEUDO = {
    REQUEST: frozenset({b":method", b":scheme", b":path", b":authority"}),
    RESPONSE: frozenset({b":status"}),
    TRAILERS: frozenset(),  # §8.1: trailers carry no pseudo-header fields
}
_STATUS = re.compile(rb"[0-9]{3}\Z")


def validate(headers, kind: int) -> str | None:
    """None if `headers` (decoded fields) is a well-formed block of `kind`."""
    pseudo: dict = {}
    allowed = _PSEUDO[kind]
    regular = False
    for name, value in headers:
        if not name:
            return EMPTY_NAME
        if _BAD_VALUE_CHAR.search(value):
            return BAD_VALUE
        if name[0] == 0x3A:  # ':'
            why = _pseudo_problem(name, value, regular, allowed, pseudo)
            if why is not None:
                return why
            pseudo[name] = value
            continue
        regular = True
        why = _regular_problem(name, value)
        if why is not None:
            return why
    if kind == REQUEST:
        return _request_problem(pseudo)
    if kind == RESPONSE:
        status = pseudo.get(b":status")
        if status is None:
            return MISSING_PSEUDO
        if not _STATUS.match(status):
            return BAD_STATUS
    return None


def _pseudo_problem(name: bytes, value: bytes, regular: bool, allowed, seen: dict) -> str | None:
    if regular:
        return PSEUDO_AFTER_REGULAR
    if name not in allowed:
        return UNKNOWN_PSEUDO
    if name in seen:
        return DUPLICATE_PSEUDO
    if not value:
        return EMPTY_PSEUDO
    return None


def _regular_problem(name: bytes, value: bytes) -> str | None:
    if _BAD_NAME_CHAR.search(name):
        return BAD_NAME
    if name in _CONNECTION_SPECIFIC:
        return CONNECTION_SPECIFIC
    if name == b"te" and value != b"trailers":
        return BAD_TE
    return None


def _request_problem(pseudo: dict) -> str | None:
    if pseudo.get(b":method") == b"CONNECT":  # §8.5
        if b":scheme" in pseudo or b":path" in pseudo:
            return CONNECT_WITH_PATH
        return None if b":authority" in pseudo else MISSING_PSEUDO
    if b":method" not in pseudo or b":scheme" not in pseudo or b":path" not in pseudo:
        return MISSING_PSEUDO
    return None
