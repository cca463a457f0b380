"""HPACK Huffman decoding (RFC 7541 §5.2, code in Appendix B), four bits at a time.

The decoder is a finite-state machine over the code tree's 256 inner nodes (the
approach of nghttp2's decoder): TRANSITIONS[state * 16 + nibble] is the state
after those four bits and the symbol they completed, if any (every code is at
least 5 bits long, so a nibble completes at most one). The table is built once
from the code at import. The codec never Huffman-*encodes* (module doc of
hpack.py), so there is no encoder here.
"""

from __future__ import annotations

from meshgrpc.codec.huffman_code import CODES, LENGTHS

EOS = 256
_NONE = -1  # the nibble completed no symbol
_FAIL = -2  # the nibble completed EOS: a decoding error (RFC 7541 §5.2)


class HuffmanError(ValueError):
    """Not a valid Huffman-coded string (RFC 7541 §5.2)."""


def _build_tree() -> list[list[int]]:
    """Inner nodes as [child0, child1]; a child >= 0 is an inner node index, a
    child < 0 is the leaf of symbol ~child."""
    nodes = [[0, 0]]
    for sym in range(257):
        code, length = CODES[sym], LENGTHS[sym]
        node = 0
        for i in range(length - 1, 0, -1):
            bit = (code >> i) & 1
            if nodes[node][bit] == 0:
                nodes.append([0, 0])
                nodes[node][bit] = len(nodes) - 1
            node = nodes[node][bit]
        nodes[node][code & 1] = ~sym
    return nodes


def _build_transitions(nodes: list[list[int]]) -> tuple[list[int], list[int]]:
    states, symbols = [], []
    for state in range(len(nodes)):
        for nibble in range(16):
            node, emitted = state, _NONE
            for i in (3, 2, 1, 0):
                child = nodes[node][(nibble >> i) & 1]
                if child < 0:
                    emitted = _FAIL if ~child == EOS or emitted == _FAIL else ~child
                    child = 0
                node = child
            states.append(node)
            symbols.append(emitted)
    return states, symbols


def _accepting(nodes: list[list[int]]) -> list[bool]:
    """States a string may end in: padding is at most 7 bits, all ones (the
    most significant bits of EOS), so the end is root or an all-ones path from
    it of depth 1..7 (RFC 7541 §5.2)."""
    ok = [False] * len(nodes)
    node = 0
    ok[0] = True
    for _ in range(7):
        node = nodes[node][1]
        ok[node] = True
    return ok


_TREE = _build_tree()
NEXT_STATE, SYMBOL = _build_transitions(_TREE)
ACCEPTING = _accepting(_TREE)


def decode(data) -> bytes:
    """The octets Huffman-coded in `data` (bytes or a memoryview)."""
    next_state, symbol = NEXT_STATE, SYMBOL
    out = bytearray()
    state = 0
    for byte in data:
        for nibble in (byte >> 4, byte & 15):
            i = (state << 4) | nibble
            sym = symbol[i]
            state = next_state[i]
            if sym >= 0:
                out.append(sym)
            elif sym == _FAIL:
                raise HuffmanError("EOS symbol in a Huffman-coded string")
    if not ACCEPTING[state]:
        raise HuffmanError("invalid Huffman padding")
    return bytes(out)
