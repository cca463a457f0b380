"""meshgrpc.codec.hpack against RFC 7541 and the `hpack` package: the Appendix C
examples decode as the RFC says; the encoder is byte for byte hpack's (without
Huffman); each decodes the other's output; the block caches never serve a
stale result. HYPOTHESIS_EXAMPLES raises the example count (default 2,000)."""

from __future__ import annotations

import os

import hpack as oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgrpc.codec import huffman
from meshgrpc.codec.errors import ENHANCE_YOUR_CALM, HpackError
from meshgrpc.codec.hpack import CACHE_ENTRIES, Decoder, Encoder, NeverIndexed

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "2000"))


def _decoder(max_list: int = 1 << 16) -> Decoder:
    return Decoder(lambda headers, kind: None, max_list)


def _fields(block: bytes, dec: Decoder) -> list:
    return list(dec.decode(block, 0)[0])


_DATE1 = b"Mon, 21 Oct 2013 20:13:21 GMT"
_DATE2 = b"Mon, 21 Oct 2013 20:13:22 GMT"
_COOKIE = b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
_REQUESTS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com"),
     (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]
_RESPONSES = [
    [(b":status", b"302"), (b"cache-control", b"private"), (b"date", _DATE1),
     (b"location", b"https://www.example.com")],
    [(b":status", b"307"), (b"cache-control", b"private"), (b"date", _DATE1),
     (b"location", b"https://www.example.com")],
    [(b":status", b"200"), (b"cache-control", b"private"), (b"date", _DATE2),
     (b"location", b"https://www.example.com"), (b"content-encoding", b"gzip"), (b"set-cookie", _COOKIE)],
]
# RFC 7541 Appendix C: (section, table size, blocks, expected lists, table sizes after each).
_APPENDIX_C = [
    ("C.3", 4096, ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
                   "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"], _REQUESTS, [57, 110, 164]),
    ("C.4", 4096, ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
                   "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"], _REQUESTS, [57, 110, 164]),
    ("C.5", 256, [
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768"
        "747470733a2f2f7777772e6578616d706c652e636f6d",
        "4803333037c1c0bf",
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d415344"
        "4a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31"],
     _RESPONSES, [222, 222, 215]),
    ("C.6", 256, [
        "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9"
        "ae82ae43d3",
        "4883640effc1c0bf",
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b39"
        "60d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"],
     _RESPONSES, [222, 222, 215]),
]


@pytest.mark.parametrize("section,size,blocks,expected,sizes", _APPENDIX_C, ids=[c[0] for c in _APPENDIX_C])
def test_rfc7541_appendix_c_examples_decode(section, size, blocks, expected, sizes):
    dec = _decoder()
    dec.table.resize(size)
    for block, want, table_size in zip(blocks, expected, sizes):
        assert _fields(bytes.fromhex(block), dec) == want
        assert dec.table.size == table_size


@pytest.mark.parametrize("section,size,blocks,expected,sizes",
                         [c for c in _APPENDIX_C if c[0] in ("C.3", "C.5")], ids=["C.3", "C.5"])
def test_rfc7541_appendix_c_examples_encode_byte_for_byte(section, size, blocks, expected, sizes):
    enc = Encoder()
    enc.table.resize(size)
    for block, headers in zip(blocks, expected):
        assert enc.encode(headers) == bytes.fromhex(block)


def test_huffman_decodes_every_symbol_and_refuses_bad_padding():
    coder = oracle.huffman.HuffmanEncoder(oracle.huffman_constants.REQUEST_CODES,
                                          oracle.huffman_constants.REQUEST_CODES_LENGTH)
    every = bytes(range(256))
    assert huffman.decode(coder.encode(every)) == every
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(b"\xff\xff\xff\xff")  # contains EOS
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(coder.encode(b"a") + b"\xff")  # padding longer than 7 bits
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(b"\x00")  # '0' then padding of zeros (not EOS's bits)


@pytest.mark.parametrize("block,why", [
    (b"\x80", "index 0"), (b"\xff\x00", "index out of range"), (b"\x40\x05ab", "string past end"),
    (b"\x41", "truncated string"), (b"\xff\xff\xff\xff\xff\xff\xff\x7f", "integer too large"),
    (b"\x82\x3f\xe1\x1f", "size update after a field"), (b"\x3f\xe2\x1f", "size update above the limit"),
])
def test_undecodable_blocks_are_compression_errors(block, why):
    with pytest.raises(HpackError) as err:
        _decoder().decode(block, 0)
    assert err.value.code == 0x9, why


def test_decoded_list_over_the_limit_is_enhance_your_calm():
    block = Encoder().encode([(b"x-big", b"v" * 100)])
    with pytest.raises(HpackError) as err:
        _decoder(max_list=100).decode(block, 0)
    assert err.value.code == ENHANCE_YOUR_CALM


def test_never_indexed_fields_go_out_never_indexed_even_when_the_table_holds_them():
    enc, dec = Encoder(), oracle.Decoder()
    field = (b"authorization", b"secret")
    dec.decode(enc.encode([field]), raw=True)  # now in the table, whole
    block = enc.encode([NeverIndexed(*field)])
    assert block[0] & 0xF0 == 0x10  # literal never indexed (RFC 7541 §6.2.3), not an index
    [got] = dec.decode(block, raw=True)
    assert isinstance(got, oracle.NeverIndexedHeaderTuple) and tuple(got) == field


def test_received_never_indexed_fields_keep_their_type():
    block = oracle.Encoder().encode([(b"a", b"1"), (b"x-secret", b"v", True)])
    got = _fields(block, _decoder())
    assert [type(f) for f in got] == [tuple, NeverIndexed] and got == [(b"a", b"1"), (b"x-secret", b"v")]


def test_block_caches_serve_repeats_and_stop_when_the_table_changes():
    enc, dec, peer = Encoder(), _decoder(), oracle.Decoder()
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    blocks = [enc.encode(headers) for _ in range(3)]
    assert enc.hits == 1 and blocks[1] == blocks[2]
    for block in blocks:
        assert peer.decode(block, raw=True) == headers
        assert _fields(block, dec) == headers
    assert dec.hits == 1
    peer.decode(enc.encode([(b"x-new", b"1")]), raw=True)  # an insert moves every dynamic index
    assert peer.decode(enc.encode(headers), raw=True) == headers and enc.hits == 1


def test_a_size_update_set_twice_still_goes_out_once():
    enc, peer = Encoder(), oracle.Decoder()
    enc.set_max_table_size(64)
    enc.set_max_table_size(64)
    block = enc.encode([(b":status", b"200")])
    assert block[0] == 0x3F and peer.decode(block, raw=True) == [(b":status", b"200")]
    assert peer.header_table.maxsize == 64
    assert enc.encode([(b":status", b"200")])[0] != 0x3F


def test_shrinking_then_growing_sends_the_smallest_size_then_the_final_one():
    enc = Encoder()
    enc.set_max_table_size(0)
    enc.set_max_table_size(4096)
    block = enc.encode([(b":status", b"200")])
    assert block.startswith(b"\x20\x3f\xe1\x1f")  # RFC 7541 §4.2: 0, then 4096


def test_caches_stay_bounded():
    enc, dec, peer = Encoder(), _decoder(), oracle.Encoder()
    for i in range(3 * CACHE_ENTRIES):
        headers = [(b":status", b"200"), (b"x-n", b"%d" % i)]
        for _ in range(2):
            enc.encode(headers)
            dec.decode(peer.encode(headers), 0)
        assert len(enc._cache) <= CACHE_ENTRIES and len(dec._cache) <= CACHE_ENTRIES


# -- properties against hpack ---------------------------------------------------------

_NAMES = [b":status", b":path", b"content-type", b"grpc-status", b"x-a", b"x-b", b"cache-control",
          b"user-agent", b"authorization"]
_VALUES = [b"", b"200", b"0", b"/svc.S/M", b"application/grpc", b"no-cache", b"v" * 40, b"\xff\x00x"]
_field = st.tuples(st.sampled_from(_NAMES) | st.binary(min_size=1, max_size=12),
                   st.sampled_from(_VALUES) | st.binary(max_size=60))
_header_list = st.lists(_field, min_size=0, max_size=8)
# A few distinct lists drawn again and again (what the caches serve), and resizes.
_ops = st.lists(_header_list, min_size=1, max_size=4).flatmap(lambda pool: st.lists(
    st.one_of(st.sampled_from(pool).map(lambda h: ("headers", h)),
              st.sampled_from([0, 64, 256, 1024, 4096]).map(lambda n: ("resize", n))),
    min_size=1, max_size=12))


@settings(max_examples=EXAMPLES, deadline=None)
@given(_ops)
def test_encoder_matches_hpack_byte_for_byte_and_decodes_there(ops):
    ours, theirs, peer = Encoder(), oracle.Encoder(), oracle.Decoder()
    resizes = 0
    for op, arg in ops:
        if op == "resize":
            if arg != ours.table.maxsize:  # hpack signals a change only
                ours.set_max_table_size(arg)
                theirs.header_table_size = arg
                resizes += 1
            continue
        block, theirs_block = ours.encode(arg), theirs.encode(arg, huffman=False)
        if resizes <= 1:
            assert block == theirs_block
        # else: hpack sends every size change, we the smallest and the final one
        # (RFC 7541 §4.2); the fields after them are the same bytes.
        resizes = 0
        assert peer.decode(block, raw=True) == arg
        assert peer.header_table.maxsize == ours.table.maxsize


@settings(max_examples=EXAMPLES, deadline=None)
@given(_ops, st.booleans(), st.lists(st.booleans(), min_size=8, max_size=8))
def test_decoder_reads_hpack_output_like_hpack(ops, use_huffman, never):
    peer, ours, plain = oracle.Encoder(), _decoder(), oracle.Decoder()
    for op, arg in ops:
        if op == "resize":
            if arg != peer.header_table.maxsize:
                peer.header_table_size = arg
            continue
        fields = [(n, v, never[i % 8]) for i, (n, v) in enumerate(arg)]
        block = peer.encode(fields, huffman=use_huffman)
        got, want = _fields(block, ours), plain.decode(block, raw=True)
        assert got == want == arg
        assert [type(f) is NeverIndexed for f in got] == \
               [isinstance(f, oracle.NeverIndexedHeaderTuple) for f in want]


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.lists(st.tuples(_field, st.booleans()), max_size=8), min_size=1, max_size=6))
def test_our_never_indexed_output_decodes_in_hpack_with_the_flag(lists):
    enc, peer = Encoder(), oracle.Decoder()
    for fields in lists:
        headers = [NeverIndexed(*f) if never else f for f, never in fields]
        got = peer.decode(enc.encode(headers), raw=True)
        assert got == headers
        assert [isinstance(f, oracle.NeverIndexedHeaderTuple) for f in got] == \
               [type(h) is NeverIndexed for h in headers]
