"""Small helpers the validation rules share: the rule signature and its Context, name
and duplicate checks, duration/range/enum checks, host name syntax and field-path building.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from google.protobuf.message import Message

from meshgrpc.config.specs.common import seconds
from meshgrpc.errors import FieldError

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

NAME_MAX = 128
WEIGHT_MAX = 10000

_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """What rules may know beyond the message they judge. `clusters` and
    `route_configs` are None when references are not checked (a resource
    validated on its own)."""

    clusters: frozenset[str] | None = None
    route_configs: frozenset[str] | None = None
    # The mesh's resource lists whose per-resource rules run only on their first
    # entries (list field -> how many); None: on every entry (validate.py).
    first: Mapping[str, int] | None = None


Rule = Callable[[Message, str, Context], Iterable[FieldError]]


def join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def name_problem(name: str, what: str = "name") -> str | None:
    if not name:
        return f"{what} is required"
    if len(name) > NAME_MAX:
        return f"{what} is {len(name)} characters long; at most {NAME_MAX}"
    if not _NAME_CHARS.fullmatch(name):
        return f'{what} "{name}" has characters outside [A-Za-z0-9._-]'
    return None


def missing_cluster(name: str, ctx: Context) -> str | None:
    """Why a reference to cluster `name` is dangling, or None (also when references are not checked)."""
    if ctx.clusters is not None and name not in ctx.clusters:
        return f'cluster "{name}" does not exist'
    return None


def duplicates(names: Iterable[str], path_of: Callable[[int], str], what: str) -> Iterator[FieldError]:
    """An error at each repeat of a name, pointing back at its first use."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(name, i)
        if j != i and name:
            yield FieldError(path_of(i), f'duplicate {what} "{name}" (also at {path_of(j)})')


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _malformed(d) -> str | None:
    if not -1e9 < d.nanos < 1e9 or (d.seconds > 0 > d.nanos) or (d.seconds < 0 < d.nanos):
        return f"malformed duration (seconds={d.seconds}, nanos={d.nanos})"
    return None


def duration(message: Message, field: str, path: str, limit: float) -> Iterator[FieldError]:
    """A set Duration must be positive and at most `limit` seconds."""
    if not message.HasField(field):
        return
    d = getattr(message, field)
    if problem := _malformed(d):
        yield FieldError(f"{path}.{field}", problem)
        return
    s = seconds(d)
    if s <= 0:
        yield FieldError(f"{path}.{field}", f"duration {fmt_seconds(s)} must be positive")
    elif s > limit:
        yield FieldError(f"{path}.{field}",
                         f"duration {fmt_seconds(s)} is longer than the limit of {fmt_seconds(limit)}")


def duration_in(message: Message, field: str, path: str, low: float, high: float) -> Iterator[FieldError]:
    """A set Duration must lie in [low, high] seconds (for fields where 0s means "off")."""
    if not message.HasField(field):
        return
    d = getattr(message, field)
    if problem := _malformed(d):
        yield FieldError(f"{path}.{field}", problem)
    elif not low <= seconds(d) <= high:
        yield FieldError(f"{path}.{field}",
                         f"duration {fmt_seconds(seconds(d))} is out of range {fmt_seconds(low)}-{fmt_seconds(high)}")


def in_range(message: Message, field: str, path: str, low: float, high: float, what: str = "") -> Iterator[FieldError]:
    """A set wrapper or scalar field must lie in [low, high]."""
    value = getattr(message, field)
    if hasattr(value, "value"):
        if not message.HasField(field):
            return
        value = value.value
    if not (low <= value <= high):  # also false for NaN
        yield FieldError(f"{path}.{field}", f"{_number(value)} is out of range {_number(low)}-{_number(high)}{what}")


def _number(x: float) -> str:
    """Whole numbers in full (16777216, not 1.67772e+07); others as %g."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def known_enum(message: Message, field: str, path: str) -> Iterator[FieldError]:
    """An enum number the schema does not define (it may arrive as a bare number)."""
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    if value not in enum.values_by_number:
        names = ", ".join(v.name for v in enum.values if v.number)
        yield FieldError(f"{path}.{field}", f"{value} is not a valid {enum.name} (valid: {names})")


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
