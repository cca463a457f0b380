"""Bounds on config documents, checked before anything walks them: size, nesting
depth and YAML alias expansion. Each broken bound is a LimitExceeded naming the
bound, so a hostile or runaway file is refused in milliseconds instead of hanging
`validate`, `apply` or the control plane's file watch.

Aliases are allowed (an anchor for a shared health check or retry policy is
ordinary YAML), but what they add is bounded. A YAML document is a graph in which
an alias is a second reference to an anchored node; the loader and the validator
walk it as a tree, so nine levels of nine aliases ("billion laughs") become 9^9
nodes. `check_yaml_graph` measures the tree each node stands for in one pass over
the distinct nodes (memoised, iterative, so a deep document cannot exhaust the
stack) before anything is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

from meshgrpc.errors import FieldError, LimitExceeded

MAX_FILE_BYTES = 16 * 1024 * 1024  # a mesh config is kilobytes; megabytes are a mistake or an attack
MAX_DEPTH = 64  # MeshConfig's deepest field is about 12 levels down
MAX_ALIAS_NODES = 100_000  # nodes aliases may add once expanded; ~0.3 s of validation


def check_size(size: int, source: str) -> None:
    if size > MAX_FILE_BYTES:
        raise LimitExceeded([FieldError("", f"file is {size} bytes, more than the limit of {MAX_FILE_BYTES} "
                                            f"bytes ({MAX_FILE_BYTES >> 20} MiB)")], source=source)


def depth_error(where: str, source: str) -> LimitExceeded:
    return LimitExceeded([FieldError("", f"nested deeper than the limit of {MAX_DEPTH} levels{where}")],
                         source=source)


def check_yaml_graph(root: yaml.Node, source: str) -> None:
    """Refuses a composed document that is too deep, refers to itself, or that aliases
    expand past the bounds: MAX_ALIAS_NODES more nodes, or more scalar text than a
    file may hold (an alias of one long string repeated is a bomb too)."""
    measured: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, levels, scalar bytes) once expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, list | None]] = [(root, None)]
    while stack:
        node, children = stack.pop()
        key = id(node)
        if children is not None:  # second visit: every child is measured
            on_path.discard(key)
            measured[key] = _measure(node, [measured[id(c)] for c in children], source)
        elif key not in measured:
            children = _children(node)
            on_path.add(key)
            stack.append((node, children))
            for child in children:
                if id(child) in on_path:
                    raise LimitExceeded([FieldError("", f"YAML node at {place(child.start_mark)} contains an alias "
                                                        "of itself: it would expand forever")], source=source)
                if id(child) in measured:
                    continue
                if isinstance(child, yaml.ScalarNode):  # a leaf: measured at once (most nodes are)
                    measured[id(child)] = (1, 1, len(child.value))
                else:
                    stack.append((child, None))
    nodes, _, text = measured[id(root)]
    if nodes - len(measured) > MAX_ALIAS_NODES:
        raise LimitExceeded([FieldError("", f"YAML aliases expand to {nodes - len(measured)} more nodes, more than the "
                                            f"limit of {MAX_ALIAS_NODES}")], source=source)


def _measure(node: yaml.Node, children: list[tuple[int, int, int]], source: str) -> tuple[int, int, int]:
    nodes = 1 + sum(c[0] for c in children)
    levels = 1 + max((c[1] for c in children), default=0)
    text = sum(c[2] for c in children)
    if levels > MAX_DEPTH:
        raise depth_error(at(node.start_mark, "below"), source)
    if text > MAX_FILE_BYTES:  # only aliases can make the text outgrow the file
        raise LimitExceeded([FieldError("", f"YAML aliases expand to more than {MAX_FILE_BYTES} characters of "
                                            f"text{at(node.start_mark)}, the limit for a whole file")], source=source)
    return nodes, levels, text


def check_depth(obj: Any, source: str) -> None:
    """Refuses decoded JSON nested deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if level > MAX_DEPTH:
            raise depth_error("", source)
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.ScalarNode):
        return []
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value


def at(mark: yaml.Mark | None, word: str = "at") -> str:
    """' (at line L, column C)' for a YAML mark, '' without one; `word` replaces "at"."""
    return f" ({word} {place(mark)})" if mark is not None else ""


def place(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"
