"""The committed stubs in generated/ are exactly what `make protos` produces."""

import filecmp
import pathlib

from meshgrpc.tools import genprotos

GENERATED = genprotos.ROOT / "generated"


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_generated_code_matches_protos(tmp_path):
    genprotos.generate(tmp_path)
    fresh, committed = _files(tmp_path), _files(GENERATED)
    assert fresh == committed, f"missing: {sorted(fresh - committed)}, extra: {sorted(committed - fresh)}"
    differing = [f for f in sorted(fresh) if not filecmp.cmp(tmp_path / f, GENERATED / f, shallow=False)]
    assert not differing, f"stale generated code, run `make protos`: {differing}"


def test_every_proto_enum_starts_with_unspecified():
    from meshapi.v1 import discovery_pb2, management_pb2, resources_pb2

    for module in (resources_pb2, discovery_pb2, management_pb2):
        for enum in _enums(module.DESCRIPTOR):
            assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name


def _enums(file_descriptor):
    yield from file_descriptor.enum_types_by_name.values()
    stack = list(file_descriptor.message_types_by_name.values())
    while stack:
        message = stack.pop()
        yield from message.enum_types
        stack.extend(message.nested_types)
