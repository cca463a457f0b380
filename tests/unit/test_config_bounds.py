"""config/bounds.py through the loader: size, depth and alias expansion are refused
as LimitExceeded, fast, with a message naming the bound; documents within the
bounds (aliases included) load as before."""

from __future__ import annotations

import time

import pytest

from meshgrpc.config import bounds, loader
from meshgrpc.errors import ConfigError, LimitExceeded


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The issue's bomb, shaped like the schema: 9^9 clusters once expanded."""
    lines = ["x0: &x0 {name: c, lb_policy: ROUND_ROBIN}"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nclusters: *x{levels}\n"


def refused(text: str | bytes, fmt: str = "yaml") -> str:
    with pytest.raises(LimitExceeded) as raised:
        loader.parse_text(text, source="mesh.yaml", fmt=fmt)
    assert raised.value.source == "mesh.yaml"
    assert isinstance(raised.value, ConfigError) and len(raised.value.errors) == 1
    return raised.value.errors[0].message


def test_an_alias_bomb_is_refused_in_milliseconds():
    started = time.perf_counter()
    message = refused(alias_bomb())
    assert time.perf_counter() - started < 0.5
    assert f"YAML aliases expand to more than {bounds.MAX_FILE_BYTES} characters of text" in message


def test_aliases_that_add_too_many_nodes_are_refused():
    # Empty strings: no text at all, only nodes (1,000 + 1 each time the list is used).
    text = "l: &l [" + ", ".join(['""'] * 1000) + "]\nr: [" + ", ".join(["*l"] * 101) + "]\n"
    assert refused(text) == f"YAML aliases expand to 101101 more nodes, more than the limit of {bounds.MAX_ALIAS_NODES}"


def test_aliases_within_the_bound_are_ordinary_yaml():
    mesh = loader.parse_text("""
clusters:
  - name: a
    health_check: &checks {interval: 5s, timeout: 1s}
  - {name: b, health_check: *checks}
  - name: c
    health_check: {<<: *checks, jitter_fraction: 0.5}
""")
    checks = [c.health_check for c in mesh.clusters]
    assert [(h.interval.seconds, h.timeout.seconds, h.jitter_fraction.value) for h in checks] == [
        (5, 1, 0), (5, 1, 0), (5, 1, 0.5)]


def test_a_self_referring_alias_is_refused():
    message = refused("clusters: &c [{name: a}, *c]\n")
    assert message == "YAML node at line 1, column 11 contains an alias of itself: it would expand forever"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_depth_up_to_the_bound_is_judged_on_content(fmt):
    nested = "[" * bounds.MAX_DEPTH + "]" * bounds.MAX_DEPTH
    with pytest.raises(ConfigError) as raised:
        loader.parse_text(nested, fmt=fmt)
    assert not isinstance(raised.value, LimitExceeded)   # "top level must be a mapping"


@pytest.mark.parametrize("depth", [bounds.MAX_DEPTH + 1, 5_000, 200_000])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deeper_than_the_bound_is_refused(fmt, depth):
    message = refused("[" * depth + "]" * depth, fmt=fmt)
    assert message.startswith(f"nested deeper than the limit of {bounds.MAX_DEPTH} levels")


def test_deep_block_yaml_is_refused_with_its_place():
    text = "clusters:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80)) + "  " * 80 + "v\n"
    assert refused(text) == f"nested deeper than the limit of {bounds.MAX_DEPTH} levels (below line 17, column 33)"


def test_text_past_the_size_bound_is_refused():
    big = b"#" * (bounds.MAX_FILE_BYTES + 1)
    assert refused(big) == f"file is {len(big)} bytes, more than the limit of {bounds.MAX_FILE_BYTES} bytes (16 MiB)"


def test_a_file_past_the_size_bound_is_refused_by_its_size(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(bounds.MAX_FILE_BYTES * 4)   # sparse: 64 MiB that costs no disk
    with pytest.raises(LimitExceeded) as raised:
        loader.load_file(path)
    assert raised.value.source == str(path)
    assert str(raised.value.errors[0]).startswith(f"file is {bounds.MAX_FILE_BYTES * 4} bytes, more than the limit")


def test_a_file_at_the_size_bound_is_read(tmp_path):
    path = tmp_path / "full.yaml"
    path.write_bytes(b"clusters: [{name: a}]\n".ljust(bounds.MAX_FILE_BYTES, b" "))
    assert [c.name for c in loader.load_file(path).clusters] == ["a"]
