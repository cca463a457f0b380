"""hpack_cache: cached HPACK results are served only while the table is unchanged,
never-indexed fields stay out of the cache, and cached or not, every block
decodes to what was encoded."""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ResponseReceived
from h2.settings import SettingCodes
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgrpc.proxy.h2conf import new_connection
from meshgrpc.proxy.hpack_cache import CACHE_ENTRIES, CachingDecoder, CachingEncoder, VersionedTable

RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc"),
            (b"grpc-accept-encoding", b"identity, deflate, gzip")]


def _is_never_indexed(headers) -> list[bool]:
    return [type(h) is NeverIndexedHeaderTuple for h in headers]


def test_repeated_header_list_is_served_from_the_cache():
    enc, peer = CachingEncoder(), Decoder()
    first = enc.encode(RESPONSE)  # inserts into the table: not cacheable
    second = enc.encode(RESPONSE)  # all indexed now: cached
    assert enc.hits == 0
    third = enc.encode(list(RESPONSE))
    assert enc.hits == 1 and third == second and len(second) == 3  # three indexed fields
    for block in (first, second, third):
        assert peer.decode(block, raw=True) == RESPONSE


def test_table_insert_invalidates_cached_blocks():
    enc, peer = CachingEncoder(), Decoder()
    for _ in range(2):
        peer.decode(enc.encode(RESPONSE), raw=True)
    version = enc.header_table.version
    assert peer.decode(enc.encode([(b"x-new", b"1")]), raw=True) == [(b"x-new", b"1")]
    assert enc.header_table.version > version
    hits = enc.hits
    block = enc.encode(RESPONSE)  # indexes shifted by the insert: re-encoded
    assert enc.hits == hits and peer.decode(block, raw=True) == RESPONSE


def test_resize_invalidates_and_the_size_update_goes_out_once():
    enc, peer = CachingEncoder(), Decoder()
    for _ in range(2):
        peer.decode(enc.encode(RESPONSE), raw=True)
    enc.header_table_size = 0  # as on SETTINGS_HEADER_TABLE_SIZE = 0
    hits = enc.hits
    resized = enc.encode(RESPONSE)
    assert resized[0] == 0x20  # dynamic table size update to 0 (RFC 7541 §6.3)
    assert enc.hits == hits and peer.decode(resized, raw=True) == RESPONSE
    again = enc.encode(RESPONSE)
    assert again[0] != 0x20 and peer.decode(again, raw=True) == RESPONSE
    assert peer.header_table.maxsize == 0


def test_setting_the_same_table_size_twice_keeps_the_pending_update():
    enc, peer = CachingEncoder(), Decoder()
    enc.header_table_size = 64
    peer.decode(enc.encode(RESPONSE), raw=True)
    enc.header_table_size = 256
    enc.header_table_size = 256  # plain hpack forgets the update here
    for _ in range(3):
        assert peer.decode(enc.encode(RESPONSE), raw=True) == RESPONSE
    assert peer.header_table.maxsize == 256


def test_settings_header_table_size_from_the_peer_invalidates_the_relay_encoder():
    relay = new_connection(client_side=False)
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()

    def exchange():
        events = []
        for _ in range(3):
            relay.receive_data(client.data_to_send())
            events += client.receive_data(relay.data_to_send())
        return events

    def respond() -> ResponseReceived:
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/s/M"),
                                 (b":authority", b"svc")])
        exchange()
        relay.send_headers(sid, RESPONSE)
        [resp] = [e for e in exchange() if isinstance(e, ResponseReceived)]
        return resp

    exchange()
    for _ in range(3):
        respond()
    hits, version = relay.encoder.hits, relay.encoder.header_table.version
    assert hits == 1
    client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
    exchange()
    assert relay.encoder.header_table.maxsize == 0 and relay.encoder.header_table.version > version
    assert respond().headers == RESPONSE and relay.encoder.hits == hits
    assert client.decoder.header_table.maxsize == 0


def test_never_indexed_fields_are_not_cached_and_stay_never_indexed():
    enc, peer = CachingEncoder(), Decoder()
    secret = NeverIndexedHeaderTuple(b"authorization", b"Bearer s3cr3t")
    headers = RESPONSE + [secret]
    for _ in range(3):
        out = peer.decode(enc.encode(headers), raw=True)
        assert out == headers and _is_never_indexed(out) == [False, False, False, True]
    assert enc.hits == 1  # the indexable head, from the third call on
    assert not any(b"Bearer s3cr3t" in h for key in enc._cache for h in key)
    assert all(entry[0] != b"authorization" for entry in enc.header_table.dynamic_entries)
    # Only never-indexed fields, or hpack's 3-tuple form: never cached.
    hits = enc.hits
    for _ in range(2):
        assert _is_never_indexed(peer.decode(enc.encode([secret]), raw=True)) == [True]
        assert _is_never_indexed(peer.decode(enc.encode([(b"x-k", b"v", True)]), raw=True)) == [True]
    assert enc.hits == hits


def test_never_indexed_field_first_is_encoded_whole():
    enc, peer = CachingEncoder(), Decoder()
    headers = [NeverIndexedHeaderTuple(b"x-a", b"1")] + RESPONSE
    for _ in range(3):
        out = peer.decode(enc.encode(headers), raw=True)
        assert out == headers and _is_never_indexed(out) == [True, False, False, False]
    assert enc.hits == 0


def test_decoder_serves_repeated_blocks_from_the_cache():
    peer, dec = Encoder(), CachingDecoder()
    dec.decode(peer.encode(RESPONSE), raw=True)
    block = peer.encode(RESPONSE)  # all indexed
    assert dec.decode(block, raw=True) == RESPONSE and dec.hits == 0
    assert dec.decode(block, raw=True) == RESPONSE and dec.hits == 1


def test_decoder_cache_clears_when_its_limits_change():
    peer, dec = Encoder(), CachingDecoder()
    dec.decode(peer.encode(RESPONSE), raw=True)
    block = peer.encode(RESPONSE)
    dec.decode(block, raw=True)
    assert dec.entries == 1
    dec.max_allowed_table_size = 8192
    assert dec.decode(block, raw=True) == RESPONSE and dec.hits == 0  # decoded afresh
    dec.max_header_list_size = 40  # the cached list (~150 octets) no longer fits
    try:
        dec.decode(block, raw=True)
    except OversizedHeaderListError:
        pass
    else:
        raise AssertionError("a cached list bypassed the new max_header_list_size")


def test_decoder_returns_plain_tuples_and_never_indexed_ones():
    peer, dec = Encoder(), CachingDecoder()
    headers = RESPONSE + [NeverIndexedHeaderTuple(b"x-secret", b"v")]
    for _ in range(3):
        out = dec.decode(peer.encode(headers), raw=True)
        assert out == headers
        assert [type(h).__name__ for h in out] == ["tuple"] * 3 + ["NeverIndexedHeaderTuple"]
    assert dec.hits == 1


def test_caches_stay_within_their_bound():
    enc, peer, dec = CachingEncoder(), Encoder(), CachingDecoder()
    for i in range(3 * CACHE_ENTRIES):
        headers = [(b":status", b"200"), (b"x-n", b"%d" % i)]
        for _ in range(2):
            enc.encode(headers)
            dec.decode(peer.encode(headers), raw=True)
        assert enc.entries <= CACHE_ENTRIES and dec.entries <= CACHE_ENTRIES
    assert enc.entries and dec.entries


# -- property: cached or not, what is encoded decodes to the input -------------------

_FIELDS = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"0"),
           (b"x-a", b"1"), (b"x-a", b"2"), (b"x-big", b"v" * 300), (b"grpc-message", b"")]
_field = st.builds(lambda f, never: NeverIndexedHeaderTuple(*f) if never else f,
                   st.sampled_from(_FIELDS), st.sampled_from([False, False, False, True]))
_header_list = st.lists(_field, min_size=1, max_size=6)
# A few distinct lists, drawn again and again (repeats are what the cache serves).
_ops = st.lists(_header_list, min_size=1, max_size=4).flatmap(lambda pool: st.lists(
    st.one_of(st.sampled_from(pool).map(lambda h: ("headers", h)),
              st.sampled_from([0, 64, 256, 1024, 4096]).map(lambda n: ("resize", n))),
    min_size=1, max_size=40))


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_caching_encoder_output_decodes_to_its_input(ops):
    enc, plain, peer = CachingEncoder(), Encoder(), Decoder()
    plain.header_table = VersionedTable()  # hpack's encoding on the same table, no cache
    for op, arg in ops:
        if op == "resize":
            enc.header_table_size = plain.header_table_size = arg
            continue
        block = enc.encode(arg)
        # Byte for byte what hpack sends uncached, never-indexed bits included
        # (hpack sends a field it finds whole in a table as an index, never-indexed
        # or not).
        assert block == plain.encode(arg, huffman=False)
        assert peer.decode(block, raw=True) == arg
        assert enc.entries <= CACHE_ENTRIES


@settings(max_examples=200, deadline=None)
@given(_ops, st.booleans())
def test_caching_decoder_decodes_like_a_plain_decoder(ops, huffman):
    peer, dec, plain = Encoder(), CachingDecoder(), Decoder()
    peer.header_table = VersionedTable()  # plain hpack can lose a pending size update
    for op, arg in ops:
        if op == "resize":
            peer.header_table_size = arg
            continue
        block = peer.encode(arg, huffman=huffman)
        got, want = dec.decode(block, raw=True), plain.decode(block, raw=True)
        assert got == want == arg and _is_never_indexed(got) == _is_never_indexed(want)
        assert dec.entries <= CACHE_ENTRIES
