"""Fields the API declares that this version of meshgrpc does not act on yet.

A field the mesh accepts must change what the mesh does; one it cannot honour yet
is refused with "not supported yet" and its path, never accepted and ignored. The
walk only descends into message types that can reach such a field, so a mesh of
ten thousand endpoints costs nothing here when none is listed under Endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.rules_common import Context, join
from meshgrpc.errors import FieldError

# (message full name, field name) refused while set.
UNSUPPORTED: frozenset[tuple[str, str]] = frozenset()


def _reaches_unsupported(descriptor: Descriptor, seen: set[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        if (descriptor.full_name, field.name) in UNSUPPORTED:
            return True
        if field.message_type is not None and _reaches_unsupported(field.message_type, seen):
            return True
    return False


def _message_types(root: Descriptor) -> set[str]:
    names: set[str] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        if d.full_name in names:
            continue
        names.add(d.full_name)
        stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    return names


_DESCEND = frozenset(name for name in _message_types(pb.MeshConfig.DESCRIPTOR)
                     if _reaches_unsupported(pb.DESCRIPTOR.pool.FindMessageTypeByName(name), set()))


def unsupported_fields(message: Message, path: str, ctx: Context) -> Iterator[FieldError]:
    """An error at every set field this version does not act on."""
    full_name = message.DESCRIPTOR.full_name
    if full_name not in _DESCEND:
        return
    for field, value in message.ListFields():
        here = join(path, field.name)
        if (full_name, field.name) in UNSUPPORTED:
            yield FieldError(here, f"{field.name} is not supported yet")
        elif field.message_type is None or field.message_type.full_name not in _DESCEND:
            continue
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from unsupported_fields(item, f"{here}[{i}]", ctx)
        else:
            yield from unsupported_fields(value, here, ctx)
