"""Fields the API declares that this version of meshgrpc does not act on yet.

A field the mesh accepts must change what the mesh does; one it cannot honour yet
is refused with "not supported yet" and its path, never accepted and ignored
(tests/unit/test_field_coverage.py holds every field to one or the other). The
walk only descends into message types that can reach such a field, so a mesh of
ten thousand endpoints costs nothing here when none is listed under Endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.rules_common import Context, Rule, join
from meshgrpc.errors import FieldError

# (message full name, field name) refused while set. Empty: every field acts.
UNSUPPORTED: frozenset[tuple[str, str]] = frozenset()


def refusing(unsupported: frozenset[tuple[str, str]]) -> Rule:
    """The rule that refuses every set field in `unsupported`, wherever in a mesh or resource."""
    descend = _reaching(unsupported)

    def rule(message: Message, path: str, ctx: Context) -> Iterator[FieldError]:
        full_name = message.DESCRIPTOR.full_name
        if full_name not in descend:
            return
        for field, value in message.ListFields():
            here = join(path, field.name)
            if (full_name, field.name) in unsupported:
                yield FieldError(here, f"{field.name} is not supported yet")
            elif field.message_type is None or field.message_type.full_name not in descend:
                continue
            elif field.is_repeated:
                for i, item in enumerate(value):
                    yield from rule(item, f"{here}[{i}]", ctx)
            else:
                yield from rule(value, here, ctx)

    rule.__name__ = "unsupported_fields"
    return rule


def _reaching(unsupported: frozenset[tuple[str, str]]) -> frozenset[str]:
    """Message types from which some field in `unsupported` can be reached."""
    names: set[str] = set()
    stack = [pb.MeshConfig.DESCRIPTOR]
    while stack:
        d = stack.pop()
        if d.full_name not in names:
            names.add(d.full_name)
            stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    return frozenset(n for n in names if _reaches(pb.DESCRIPTOR.pool.FindMessageTypeByName(n), unsupported, set()))


def _reaches(descriptor: Descriptor, unsupported, seen: set[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    return any((descriptor.full_name, f.name) in unsupported
               or (f.message_type is not None and _reaches(f.message_type, unsupported, seen))
               for f in descriptor.fields)


unsupported_fields = refusing(UNSUPPORTED)
