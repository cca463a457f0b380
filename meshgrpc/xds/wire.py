"""Hand-assembled protobuf encodings for the discovery stream's hot path.

A DiscoveryResponse's fields may be written in any order and concatenated
(protobuf encoding spec: "concatenating two messages merges them"), so a response
is built as one cached body (type_url, version_info, resources) shared by every
stream, plus a few bytes of nonce field per stream. Tests check these bytes
parse back to the message protobuf would have built.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from google.protobuf.message import Message

# Tags (field_number << 3 | wire type 2 = length-delimited).
_ANY_TYPE_URL, _ANY_VALUE = b"\x0a", b"\x12"
# DeltaDiscoveryResponse and its Resource.
_DELTA_SYSTEM_VERSION, _DELTA_RESOURCES, _DELTA_TYPE_URL, _DELTA_NONCE, _DELTA_REMOVED = \
    b"\x0a", b"\x12", b"\x22", b"\x2a", b"\x32"
_RESOURCE_VERSION, _RESOURCE_ANY, _RESOURCE_NAME = b"\x0a", b"\x12", b"\x1a"


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


def pack_any(type_url: str, message: Message) -> bytes:
    """The serialized google.protobuf.Any holding `message` (deterministic)."""
    value = message.SerializeToString(deterministic=True)
    return _field(_ANY_TYPE_URL, type_url.encode()) + _field(_ANY_VALUE, value)


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseFields:
    """The tags of a DiscoveryResponse's fields: meshapi.v1's and Envoy's
    (envoy.service.discovery.v3) messages have the same fields under other numbers."""

    type_url: bytes
    version: bytes
    nonce: bytes
    resources: bytes

    def body(self, type_url: str, version: str, any_bytes: Iterable[bytes]) -> bytes:
        """A DiscoveryResponse without its nonce."""
        parts = [_field(self.type_url, type_url.encode()), _field(self.version, version.encode())]
        parts += [_field(self.resources, a) for a in any_bytes]
        return b"".join(parts)

    def nonce_field(self, nonce: str) -> bytes:
        """The DiscoveryResponse nonce field, appended to a cached body."""
        return _field(self.nonce, nonce.encode())


# meshapi.v1.DiscoveryResponse: type_url = 1, version_info = 2, nonce = 3, resources = 4.
MESH_RESPONSE = ResponseFields(type_url=b"\x0a", version=b"\x12", nonce=b"\x1a", resources=b"\x22")
response_body = MESH_RESPONSE.body
nonce_field = MESH_RESPONSE.nonce_field


def delta_resource_field(name: str, version: str, any_bytes: bytes) -> bytes:
    """A DeltaDiscoveryResponse `resources` entry (tag included): built once per
    resource and version, shared by every stream it is sent on."""
    resource = _field(_RESOURCE_NAME, name.encode()) + _field(_RESOURCE_VERSION, version.encode()) + \
        _field(_RESOURCE_ANY, any_bytes)
    return _field(_DELTA_RESOURCES, resource)


def delta_response_body(type_url: str, system_version: str, resource_fields: Iterable[bytes],
                        removed: Iterable[str]) -> bytes:
    """A DeltaDiscoveryResponse without its nonce."""
    parts = [_field(_DELTA_TYPE_URL, type_url.encode()), _field(_DELTA_SYSTEM_VERSION, system_version.encode())]
    parts += resource_fields
    parts += [_field(_DELTA_REMOVED, name.encode()) for name in removed]
    return b"".join(parts)


def delta_nonce_field(nonce: str) -> bytes:
    return _field(_DELTA_NONCE, nonce.encode())


class BodyCache:
    """Bounded LRU of response bodies by key, so that a body that is not a
    snapshot's prebuilt wildcard body (a subset of names, an interim
    make-before-break union) is still built once for all streams that need it."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = build()
            if len(self._bodies) > self._capacity:
                self._bodies.popitem(last=False)
        else:
            self._bodies.move_to_end(key)
        return body

    def __len__(self) -> int:
        return len(self._bodies)
