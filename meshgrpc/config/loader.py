"""Config documents in and out: YAML or JSON text -> plain data -> MeshConfig, and back.

The file format is the protobuf JSON mapping of MeshConfig. Text is held to the
bounds in bounds.py (size, depth, alias expansion) before it is decoded into plain
data. A decoded document is then checked against the message descriptors
(structure.py), which reports every structural error at once with its field path;
only a document that passes is handed to json_format.ParseDict. Semantic rules
(names, references, ranges) live in validate.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshapi.v1 import resources_pb2
from meshgrpc.config import bounds
from meshgrpc.config.structure import describe, is_map, structural_errors
from meshgrpc.errors import ConfigError, FieldError

MeshConfig = resources_pb2.MeshConfig


# ---------------------------------------------------------------- public API


def parse_document(obj: Any, source: str = "") -> resources_pb2.MeshConfig:
    """A MeshConfig from a decoded YAML/JSON document (None counts as empty).
    Raises ConfigError carrying every structural error found."""
    return parse_message(obj, MeshConfig, source)


def parse_message(obj: Any, message_class: type[Message], source: str = "") -> Message:
    """Like parse_document, for any message class (e.g. a single Cluster)."""
    if obj is None:
        return message_class()
    errors = structural_errors(obj, message_class.DESCRIPTOR)
    if errors:
        raise ConfigError(errors, source=source)
    message = message_class()
    try:
        json_format.ParseDict(obj, message)
    except (json_format.ParseError, ValueError, TypeError, OverflowError, RecursionError) as e:
        # The walk should have caught everything; this keeps the contract if it did not.
        raise ConfigError([FieldError("", str(e))], source=source) from e
    return message


def load_file(path: str | os.PathLike) -> resources_pb2.MeshConfig:
    """Reads a YAML or JSON MeshConfig file. Raises ConfigError (naming the file)
    for an unreadable file, a syntax error (with line and column) or bad content,
    and LimitExceeded for a file past a bound (bounds.py)."""
    source = os.fspath(path)
    return parse_text(read_file(source), source=source, fmt=file_format(source))


def read_file(path: str) -> bytes:
    """The file's bytes, reading no more than one byte past the size bound."""
    try:
        with open(path, "rb") as f:
            raw = f.read(bounds.MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError([FieldError("", f"cannot read file: {e.strerror or e}")], source=path) from e
    if len(raw) > bounds.MAX_FILE_BYTES:
        bounds.check_size(os.path.getsize(path), path)
    return raw


def file_format(path: str) -> str:
    """The format a path names: json for a .json file, else yaml."""
    return "json" if path.endswith(".json") else "yaml"


def parse_text(text: str | bytes, source: str = "", fmt: str = "yaml") -> resources_pb2.MeshConfig:
    """A MeshConfig from YAML (which also reads most JSON) or, with fmt="json", strict JSON."""
    bounds.check_size(len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass")), source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ConfigError([FieldError("", f"not UTF-8 text: {e.reason} at byte {e.start}")], source=source) from e
    obj = _decode_json(text, source) if fmt == "json" else _decode_yaml(text, source)
    if obj is not None and not isinstance(obj, dict):
        raise ConfigError([FieldError("", f"top level must be a mapping (a MeshConfig), got {describe(obj)}")],
                          source=source)
    return parse_document(obj, source=source)


def dump(message: Message, fmt: str = "yaml") -> str:
    """The protobuf JSON mapping of `message` as YAML or JSON: proto field names (so
    the output loads again), fields in declaration order, map keys sorted, defaults omitted."""
    obj = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _sort_maps(obj, message.DESCRIPTOR)
    if fmt == "json":
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False)
    raise ValueError(f"unknown format {fmt!r}; expected yaml or json")


# ---------------------------------------------------------------- text decoding


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that refuses duplicate keys and keeps dates as strings."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first[key].line + 1})", key_node.start_mark)
            first[key] = key_node.start_mark
        except TypeError:
            pass  # unhashable key: construct_mapping below reports it
    return yaml.SafeLoader.construct_mapping(loader, node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# "2024-01-01" as a zone or a header value is text, not a date.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _decode_yaml(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        # Composed (a node graph, aliases shared) and bounded before anything expands it.
        node = loader.get_single_node()
        if node is None:
            return None
        bounds.check_yaml_graph(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        if getattr(e, "problem", None) == _LIBYAML_TOO_DEEP:  # libyaml's own bound (1,000 levels), past ours
            raise bounds.depth_error(bounds.at(e.problem_mark), source) from e
        raise ConfigError([FieldError("", _yaml_message(e))], source=source) from e
    except RecursionError as e:  # the pure-Python composer, where libyaml is missing
        raise bounds.depth_error("", source) from e
    finally:
        loader.dispose()


_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"


def _yaml_message(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    what = f"{context}: {problem}" if context else problem
    if mark is None:
        return f"YAML error: {what}"
    return f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {what}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _decode_json(text: str, source: str) -> Any:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates) if text.strip() else None
    except json.JSONDecodeError as e:
        raise ConfigError([FieldError("", f"JSON error at line {e.lineno}, column {e.colno}: {e.msg}")],
                          source=source) from e
    except RecursionError as e:
        raise bounds.depth_error("", source) from e
    except ValueError as e:
        raise ConfigError([FieldError("", f"JSON error: {e}")], source=source) from e
    bounds.check_depth(obj, source)
    return obj


# ---------------------------------------------------------------- dump helpers


def _sort_maps(obj: dict, desc: Descriptor) -> None:
    """Sorts map entries in place, recursively, so dump() output is stable."""
    for field in desc.fields:
        value = obj.get(field.name)
        if value is None or field.message_type is None:
            continue
        if is_map(field):
            obj[field.name] = dict(sorted(value.items()))
            value_type = field.message_type.fields_by_name["value"].message_type
            if value_type is not None and _is_plain(value_type):
                for item in obj[field.name].values():
                    _sort_maps(item, value_type)
        elif _is_plain(field.message_type):
            for item in value if isinstance(value, list) else [value]:
                _sort_maps(item, field.message_type)


def _is_plain(desc: Descriptor) -> bool:
    """True for messages whose JSON form is an object of their fields."""
    return not desc.full_name.startswith("google.protobuf.")
