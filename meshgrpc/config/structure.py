"""The structural walk of a config document against the protobuf descriptors: every
unknown field (with the closest valid name), wrong type, bad enum name, bad duration,
doubly-set oneof, bad map key and bad wrapper value, each reported with its field path.

json_format.ParseDict stops at the first problem and names it in protobuf's words, so
loader.py runs this walk first and hands only a clean document to ParseDict.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import re
from functools import lru_cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from meshgrpc.errors import FieldError

# google.protobuf.Duration's JSON form: seconds with up to 9 fractional digits, then "s".
_DURATION = re.compile(r"-?[0-9]+(?:\.[0-9]{1,9})?s")
_MAX_DURATION_SECONDS = 315_576_000_000  # the range Duration allows: +-10,000 years

# Wrappers appear in JSON as their bare value (UInt32Value -> 3).
_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
# Well-known types with a JSON form of their own that the walk does not model; ParseDict judges them.
_OPAQUE = frozenset(
    f"google.protobuf.{n}" for n in ("Any", "Struct", "Value", "ListValue", "Timestamp", "FieldMask")
)

_T = FieldDescriptor
_INT_RANGES = {
    _T.CPPTYPE_INT32: (-(2**31), 2**31 - 1, "int32"),
    _T.CPPTYPE_UINT32: (0, 2**32 - 1, "uint32"),
    _T.CPPTYPE_INT64: (-(2**63), 2**63 - 1, "int64"),
    _T.CPPTYPE_UINT64: (0, 2**64 - 1, "uint64"),
}
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


def structural_errors(obj: Any, desc: Descriptor) -> list[FieldError]:
    """Every structural error in `obj` as the JSON form of message `desc`; empty when
    json_format.ParseDict would accept it."""
    errors: list[FieldError] = []
    _check_message(obj, desc, "", errors)
    return errors


@lru_cache(maxsize=None)
def _fields_of(desc: Descriptor) -> dict[str, FieldDescriptor]:
    """Field lookup by proto name and by JSON (camelCase) name; ParseDict accepts both."""
    fields = {f.json_name: f for f in desc.fields}
    fields.update({f.name: f for f in desc.fields})
    return fields


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_message(obj: Any, desc: Descriptor, path: str, errors: list[FieldError]) -> None:
    if not isinstance(obj, dict):
        errors.append(FieldError(path, f"expected a mapping ({desc.name}), got {describe(obj)}"))
        return
    fields = _fields_of(desc)
    given: dict[str, str] = {}  # proto field name -> the key it was given as
    oneofs: dict[str, str] = {}  # oneof name -> the member already set
    for key, value in obj.items():
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            shown = key if isinstance(key, str) and key else json.dumps(key) if isinstance(key, str) else repr(key)
            errors.append(FieldError(_join(path, shown), _unknown_field(desc, key)))
            continue
        fpath = _join(path, field.name)
        if field.name in given:
            errors.append(FieldError(fpath, f'given twice (as "{given[field.name]}" and "{key}")'))
            continue
        given[field.name] = key
        if value is None:
            continue  # null means unset in the protobuf JSON mapping
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in oneofs:
                members = ", ".join(f.name for f in oneof.fields)
                errors.append(FieldError(fpath, f'"{oneofs[oneof.name]}" is already set; set only one of {members}'))
                continue
            oneofs[oneof.name] = field.name
        _check_field(value, field, fpath, errors)


def _unknown_field(desc: Descriptor, key: Any) -> str:
    if not isinstance(key, str):
        return f"unknown field {describe(key)}; field names are strings"
    names = [f.name for f in desc.fields]
    close = difflib.get_close_matches(key, list(_fields_of(desc)), n=1, cutoff=0.6)
    if close:
        return f'unknown field; did you mean "{close[0]}"?'
    return f"unknown field; {desc.name} has " + ", ".join(names)


@lru_cache(maxsize=None)
def is_map(field: FieldDescriptor) -> bool:
    """True for a map<K, V> field (a repeated synthetic *Entry message)."""
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _check_field(value: Any, field: FieldDescriptor, path: str, errors: list[FieldError]) -> None:
    if is_map(field):
        _check_map(value, field, path, errors)
    elif field.is_repeated:
        _check_list(value, field, path, errors)
    else:
        _check_single(value, field, path, errors)


def _check_list(value: Any, field: FieldDescriptor, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, (list, tuple)):
        hint = f" (write [{describe(value)}])" if _is_scalar(value) else ""
        errors.append(FieldError(path, f"expected a list, got {describe(value)}{hint}"))
        return
    for i, item in enumerate(value):
        if item is None:
            errors.append(FieldError(f"{path}[{i}]", "null is not allowed in a list"))
        else:
            _check_single(item, field, f"{path}[{i}]", errors)


def _check_map(value: Any, field: FieldDescriptor, path: str, errors: list[FieldError]) -> None:
    if not isinstance(value, dict):
        errors.append(FieldError(path, f"expected a mapping, got {describe(value)}"))
        return
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for key, item in value.items():
        item_path = f"{path}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"
        if not isinstance(key, str):
            errors.append(FieldError(item_path, f"map keys must be strings, got {describe(key)} (quote it)"))
            continue
        problem = _scalar_problem(key, key_field) if key_field.cpp_type != _T.CPPTYPE_STRING else None
        if problem:
            errors.append(FieldError(item_path, f"key: {problem}"))
        if item is None:
            errors.append(FieldError(item_path, "null is not allowed as a map value"))
        else:
            _check_single(item, value_field, item_path, errors)


def _check_single(value: Any, field: FieldDescriptor, path: str, errors: list[FieldError]) -> None:
    if field.cpp_type == _T.CPPTYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name == "google.protobuf.Duration":
            problem = _duration_problem(value)
        elif full_name in _WRAPPERS:
            problem = _scalar_problem(value, field.message_type.fields_by_name["value"])
        elif full_name in _OPAQUE:
            problem = None
        else:
            _check_message(value, field.message_type, path, errors)
            return
    else:
        problem = _scalar_problem(value, field)
    if problem:
        errors.append(FieldError(path, problem))


def _duration_problem(value: Any) -> str | None:
    if isinstance(value, str) and _DURATION.fullmatch(value):
        if abs(float(value[:-1])) <= _MAX_DURATION_SECONDS:
            return None
        return f"duration {value} is out of range (at most {_MAX_DURATION_SECONDS}s)"
    hint = " (durations are strings with a unit of seconds)" if _is_number(value) else ""
    return f'expected a duration like "2s" or "0.030s", got {describe(value)}{hint}'


def _scalar_problem(value: Any, field: FieldDescriptor) -> str | None:
    """Why `value` cannot be the JSON form of scalar `field`, or None if it can."""
    cpp = field.cpp_type
    if cpp in _INT_RANGES:
        return _int_problem(value, *_INT_RANGES[cpp])
    if cpp in (_T.CPPTYPE_DOUBLE, _T.CPPTYPE_FLOAT):
        return _float_problem(value, cpp == _T.CPPTYPE_FLOAT)
    if cpp == _T.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return None
        hint = " (remove the quotes)" if value in ("true", "false") else ""
        return f"expected true or false, got {describe(value)}{hint}"
    if cpp == _T.CPPTYPE_ENUM:
        return _enum_problem(value, field)
    if field.type == _T.TYPE_BYTES:
        return None if isinstance(value, str) and _is_base64(value) else f"expected base64 text, got {describe(value)}"
    return _string_problem(value)


def _int_problem(value: Any, low: int, high: int, kind: str) -> str | None:
    number = _as_integer(value)
    if number is None:
        return f"expected an integer, got {describe(value)}"
    if not low <= number <= high:
        return f"{number} is out of range for {kind} ({low} to {high})"
    return None


def _as_integer(value: Any) -> int | None:
    """The integer ParseDict would read from `value`, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and " " not in value:
        try:
            return int(value)
        except ValueError:
            pass
        try:
            f = float(value)
        except ValueError:
            return None
        return int(f) if f.is_integer() else None
    return None


def _float_problem(value: Any, single: bool) -> str | None:
    if isinstance(value, bool):
        return f"expected a number, got {describe(value)}"
    if isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:
            return f"{value} is out of range for a floating-point number"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return 'expected a finite number (write "NaN", "Infinity" or "-Infinity" as strings)'
        if single and abs(value) > 3.4028234663852886e38:
            return f"{value} is out of range for float"
        return None
    if isinstance(value, str):
        if value in _FLOAT_WORDS:
            return None
        try:
            if value != "nan":
                float(value)
                return None
        except ValueError:
            pass
    return f"expected a number, got {describe(value)}"


def _enum_problem(value: Any, field: FieldDescriptor) -> str | None:
    enum = field.enum_type
    if isinstance(value, str):
        if value in enum.values_by_name:
            return None
        # ParseDict also takes a number in a string; validate.py judges its range.
        if _as_integer(value) is not None and " " not in value and "." not in value:
            return None
        names = [v.name for v in enum.values if v.number != 0] or [v.name for v in enum.values]
        close = difflib.get_close_matches(value.upper(), names, n=1, cutoff=0.6)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        return f"unknown {enum.name} {describe(value)}; valid: {', '.join(names)}{guess}"
    if isinstance(value, int) and not isinstance(value, bool):
        return None if -(2**31) <= value < 2**31 else f"{value} is out of range for an enum"
    return f"expected one of {', '.join(v.name for v in enum.values if v.number != 0)}, got {describe(value)}"


def _string_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return "contains an unpaired surrogate" if _UNPAIRED_SURROGATE.search(value) else None
    hint = " (quote it)" if _is_scalar(value) else ""
    return f"expected a string, got {describe(value)}{hint}"


def _is_base64(text: str) -> bool:
    try:
        base64.urlsafe_b64decode(text.encode() + b"=" * (4 - len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def describe(value: Any) -> str:
    """A value as an error message shows it: JSON for scalars, a word for the rest."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        shown = json.dumps(value if len(value) <= 60 else value[:57] + "...")
        return shown
    if value is None or isinstance(value, (bool, int, float)):
        try:
            return json.dumps(value)
        except ValueError:
            return repr(value)
    return f"a {type(value).__name__}"
