"""What every spec builder shares: reading optional protobuf fields with the spec's
own default, durations in seconds, and a JSON-ready view of a spec."""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.message import Message


def seconds(duration) -> float:
    """A google.protobuf.Duration in seconds (the one conversion the mesh uses)."""
    return duration.seconds + duration.nanos / 1e9


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a google.protobuf.Duration (the inverse of `seconds`, to the nanosecond)."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


@functools.cache
def default_of(spec_class, field: str) -> Any:
    """The default declared on a spec field (so validation and builders share it)."""
    for f in dataclasses.fields(spec_class):
        if f.name == field:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{spec_class.__name__} has no default for {field}")


def duration_or(message: Message, field: str, spec_class, spec_field: str | None = None) -> float:
    """A Duration field in seconds, or the spec's default when unset."""
    if message.HasField(field):
        return seconds(getattr(message, field))
    return default_of(spec_class, spec_field or field)


def optional_duration(message: Message, field: str) -> float | None:
    """A Duration field in seconds, or None when unset or zero: no bound (Envoy's convention)."""
    value = seconds(getattr(message, field)) if message.HasField(field) else 0.0
    return value if value > 0 else None


def wrapped_or(message: Message, field: str, spec_class, spec_field: str | None = None) -> Any:
    """A wrapper (UInt32Value, DoubleValue) field's value, or the spec's default when unset."""
    if message.HasField(field):
        return getattr(message, field).value
    return default_of(spec_class, spec_field or field)


def describe(spec: Any) -> Any:
    """A spec as plain JSON-ready data (for /config_dump and /clusters)."""
    if dataclasses.is_dataclass(spec):
        return {f.name: describe(getattr(spec, f.name)) for f in dataclasses.fields(spec)
                if not f.name.startswith("_")}
    if isinstance(spec, enum.Enum):
        return spec.name
    if isinstance(spec, (frozenset, set)):
        return sorted(describe(v) for v in spec)
    if isinstance(spec, (tuple, list)):
        return [describe(v) for v in spec]
    if isinstance(spec, bytes):
        return spec.decode("utf-8", "replace")
    if isinstance(spec, dict):
        return {str(describe(k)): describe(v) for k, v in spec.items()}
    return spec
