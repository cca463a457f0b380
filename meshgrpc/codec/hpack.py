"""HPACK (RFC 7541) for one connection: the dynamic table, the encoder and the
decoder, each with a whole-block result cache valid while its table is unchanged.

Header fields are 2-tuples of bytes (name, value). A field sent or received
never-indexed (RFC 7541 §6.2.3) is a `NeverIndexed`, a tuple subclass: it
compares equal to the plain tuple but keeps its type, so a relay that forwards
the decoded objects forwards such a field never-indexed, as §6.2.3 requires of
intermediaries. Unlike the `hpack` package, the encoder sends a NeverIndexed
field as a never-indexed literal even when the table holds it whole (hpack then
sends an index, which is not "the same representation").

The encoder never Huffman-codes (Huffman coding costs more CPU than it saves
bytes on loopback and sidecar links) and otherwise encodes exactly as the
`hpack` package does: static table first, then the newest dynamic entry; a field
found whole is sent as an index, a name found as an indexed-name literal with
incremental indexing, anything else as a new-name literal with incremental
indexing.

Result caches (what meshgrpc/proxy/hpack_cache.py proved: proxy CPU 199 -> 135 µs
per call): a block made only of indexed fields (§6.1) leaves the table as it was,
and encoding or decoding is a function of the input and the table alone (§2.3),
so the same input at the same table version gives the same output. Each table
counts its changes (`version`: every insert, every resize); a result is stored
only when producing it left the version unchanged, and served only while the
version still matches. Bounded: CACHE_ENTRIES results per direction (cleared
when full), decoded blocks of at most MAX_CACHED_BLOCK bytes. A pending table
size update is never served from the cache and is never lost when the same size
is set twice before it went out (the `hpack` bug hpack_cache documents).
NeverIndexed fields are never cached on encode: only the plain head of a list is
(then the rest is encoded after it), so a sensitive value never sits in a cache.
"""

from __future__ import annotations

from meshgrpc.codec import huffman
from meshgrpc.codec.errors import ENHANCE_YOUR_CALM, HpackError
from meshgrpc.codec.static_table import STATIC_TABLE

CACHE_ENTRIES = 64
MAX_CACHED_BLOCK = 4096
DEFAULT_TABLE_SIZE = 4096
ENTRY_OVERHEAD = 32  # RFC 7541 §4.1
_STATIC_LEN = len(STATIC_TABLE)
_MAX_INT = 1 << 32  # larger integers are refused (no sane peer sends them)


class NeverIndexed(tuple):
    """A header field that must never be indexed (RFC 7541 §6.2.3)."""

    __slots__ = ()

    def __new__(cls, name: bytes, value: bytes):
        return tuple.__new__(cls, (name, value))


def _static_maps() -> tuple[dict, dict]:
    fields, names = {}, {}
    for i, (name, value) in enumerate(STATIC_TABLE, 1):
        fields.setdefault((name, value), i)
        names.setdefault(name, i)
    return fields, names


STATIC_FIELDS, STATIC_NAMES = _static_maps()


class DynamicTable:
    """The dynamic table (RFC 7541 §2.3.2, §4): newest entry at index 62.

    Entries carry their insertion number, so `find()` is two dict lookups: the
    maps hold the newest insertion of each field and of each name."""

    __slots__ = ("entries", "size", "maxsize", "version", "inserted", "_fields", "_names")

    def __init__(self, maxsize: int = DEFAULT_TABLE_SIZE) -> None:
        # (name, value, insertion number), newest first. A list, not a deque: at
        # most ~128 entries fit 4,096 octets, so inserting at the front is a short
        # memmove, and an empty list costs 56 bytes where a deque costs 624 (two
        # tables per connection, thousands of connections on a control plane).
        self.entries: list = []
        self.size = 0
        self.maxsize = maxsize
        self.version = 0
        self.inserted = 0
        self._fields: dict = {}
        self._names: dict = {}

    def get(self, index: int) -> tuple:
        """The field at HPACK `index` (static or dynamic); HpackError if none."""
        if 0 < index <= _STATIC_LEN:
            return STATIC_TABLE[index - 1]
        i = index - _STATIC_LEN - 1
        if 0 <= i < len(self.entries):
            entry = self.entries[i]
            return entry[0], entry[1]
        raise HpackError(f"header table index {index} out of range")

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        size = ENTRY_OVERHEAD + len(name) + len(value)
        if size > self.maxsize:  # RFC 7541 §4.4: empties the table, adds nothing
            self._evict_to(0)
            return
        self._evict_to(self.maxsize - size)
        self.inserted += 1
        n = self.inserted
        self.entries.insert(0, (name, value, n))
        self.size += size
        self._fields[(name, value)] = n
        self._names[name] = n

    def resize(self, maxsize: int) -> None:
        self.version += 1
        self.maxsize = maxsize
        self._evict_to(maxsize)

    def _evict_to(self, limit: int) -> None:
        entries = self.entries
        while self.size > limit:
            name, value, n = entries.pop()
            self.size -= ENTRY_OVERHEAD + len(name) + len(value)
            if self._fields.get((name, value)) == n:
                del self._fields[(name, value)]
            if self._names.get(name) == n:
                del self._names[name]

    def find_field(self, field: tuple) -> int:
        """HPACK index of the newest entry equal to `field`, 0 if none."""
        n = self._fields.get(field)
        return 0 if n is None else _STATIC_LEN + 1 + self.inserted - n

    def find_name(self, name: bytes) -> int:
        n = self._names.get(name)
        return 0 if n is None else _STATIC_LEN + 1 + self.inserted - n


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1; `first` holds the bits above the prefix of the first octet."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(first: int, prefix_bits: int, index: int, name: bytes, value: bytes) -> bytes:
    if index:
        head = encode_integer(index, prefix_bits, first)
    else:
        head = bytes((first,)) + encode_integer(len(name), 7, 0) + name
    return head + encode_integer(len(value), 7, 0) + value


class Encoder:
    """Header lists to header blocks (module doc). `hits` counts cached blocks."""

    __slots__ = ("table", "hits", "_cache", "_size_min", "_size_final")

    def __init__(self) -> None:
        self.table = DynamicTable()
        self.hits = 0
        self._cache: dict = {}
        self._size_min = -1  # pending size update: smallest and final size since the last block
        self._size_final = -1

    def set_max_table_size(self, size: int) -> None:
        """Use a table of `size` octets (at most what the peer's
        SETTINGS_HEADER_TABLE_SIZE allows) and tell the decoder in the next block:
        the smallest size since the last block, then the final one (§4.2)."""
        self.table.resize(size)
        self._size_min = size if self._size_min < 0 else min(self._size_min, size)
        self._size_final = size

    def encode(self, headers) -> bytes:
        if self._size_final >= 0:
            return self._size_update() + self._encode_fields(headers)
        n = _plain_prefix(headers)
        if n == len(headers):
            return self._cached(headers)
        if n == 0:
            return self._encode_fields(headers)
        return self._cached(headers[:n]) + self._encode_fields(headers[n:])

    def _size_update(self) -> bytes:
        out = b""
        if self._size_min < self._size_final:
            out = encode_integer(self._size_min, 5, 0x20)
        out += encode_integer(self._size_final, 5, 0x20)
        self._size_min = self._size_final = -1
        return out

    def _cached(self, headers) -> bytes:
        key = tuple(headers)
        table = self.table
        version = table.version
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            self.hits += 1
            return hit[1]
        block = self._encode_fields(key)
        if table.version == version:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (version, block)
        return block

    def _encode_fields(self, headers) -> bytes:
        table = self.table
        out = []
        for field in headers:
            name = field[0]
            if type(field) is NeverIndexed:
                index = STATIC_NAMES.get(name) or table.find_name(name)
                out.append(_literal(0x10, 4, index, name, field[1]))
                continue
            field = (name, field[1])
            index = STATIC_FIELDS.get(field) or table.find_field(field)
            if index:
                out.append(encode_integer(index, 7, 0x80))
                continue
            index = STATIC_NAMES.get(name) or table.find_name(name)
            out.append(_literal(0x40, 6, index, name, field[1]))
            table.add(name, field[1])
        return b"".join(out)


def _plain_prefix(headers) -> int:
    """How many leading fields are plain tuples (cacheable, see module doc)."""
    n = 0
    for field in headers:
        if type(field) is not tuple:
            return n
        n += 1
    return n


class Decoder:
    """Header blocks to header lists (module doc).

    `decode(block, kind)` returns (headers, verdict): headers is a tuple of
    fields, shared with the cache; verdict is `validate(headers, kind)`, computed
    once per distinct block, kind and table version. Raises HpackError: a
    COMPRESSION_ERROR, or ENHANCE_YOUR_CALM once the decoded list exceeds
    `max_header_list_size` (RFC 9113 §6.5.2 counts 32 octets per field)."""

    __slots__ = ("table", "max_table_size", "max_header_list_size", "validate", "hits", "_cache")

    def __init__(self, validate, max_header_list_size: int, max_table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self.table = DynamicTable(max_table_size)
        self.max_table_size = max_table_size  # what our SETTINGS_HEADER_TABLE_SIZE allows
        self.max_header_list_size = max_header_list_size
        self.validate = validate
        self.hits = 0
        self._cache: dict = {}

    def decode(self, block: bytes, kind: int) -> tuple[tuple, int]:
        table = self.table
        version = table.version
        hit = self._cache.get(block)
        if hit is not None and hit[0] == version:
            if hit[2] == kind:
                self.hits += 1
                return hit[1], hit[3]
            headers = hit[1]
        else:
            headers = tuple(self._decode_fields(block))
        verdict = self.validate(headers, kind)
        if table.version == version and len(block) <= MAX_CACHED_BLOCK:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[block] = (version, headers, kind, verdict)
        return headers, verdict

    def _decode_fields(self, block: bytes) -> list:
        table = self.table
        out = []
        pos, end = 0, len(block)
        budget = self.max_header_list_size
        while pos < end:
            b = block[pos]
            if b & 0x80:  # indexed field (§6.1)
                index, pos = _integer(block, pos, 7)
                if index == 0:
                    raise HpackError("header table index 0")
                field = table.get(index)
            elif b & 0x40:  # literal with incremental indexing (§6.2.1)
                field, pos = self._literal(block, pos, 6)
                table.add(field[0], field[1])
            elif b & 0x20:  # dynamic table size update (§6.3)
                if out:
                    raise HpackError("table size update after a header field (RFC 7541 §4.2)")
                size, pos = _integer(block, pos, 5)
                if size > self.max_table_size:
                    raise HpackError(f"table size update to {size} above the {self.max_table_size} allowed")
                table.resize(size)
                continue
            else:  # literal without indexing (§6.2.2) or never indexed (§6.2.3)
                field, pos = self._literal(block, pos, 4)
                if b & 0x10:
                    field = NeverIndexed(field[0], field[1])
            budget -= ENTRY_OVERHEAD + len(field[0]) + len(field[1])
            if budget < 0:
                raise HpackError(f"header list larger than {self.max_header_list_size} octets",
                                 ENHANCE_YOUR_CALM)
            out.append(field)
        return out

    def _literal(self, block: bytes, pos: int, prefix_bits: int) -> tuple[tuple, int]:
        index, pos = _integer(block, pos, prefix_bits)
        if index:
            name = self.table.get(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return (name, value), pos


def _integer(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 §5.1: (value, position after it)."""
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    end = len(block)
    while True:
        if pos >= end:
            raise HpackError("truncated integer")
        b = block[pos]
        pos += 1
        value += (b & 127) << shift
        if value > _MAX_INT:
            raise HpackError("integer too large")
        if not b & 128:
            return value, pos
        shift += 7


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    """RFC 7541 §5.2: (octets, position after them)."""
    if pos >= len(block):
        raise HpackError("truncated string")
    coded = block[pos] & 0x80
    length, pos = _integer(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise HpackError("string runs past the end of the block")
    raw = block[pos:end]
    if coded:
        try:
            raw = huffman.decode(raw)
        except huffman.HuffmanError as e:
            raise HpackError(str(e)) from None
    return raw, end
