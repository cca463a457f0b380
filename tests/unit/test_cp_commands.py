"""The operator commands' refusals that need no control plane: a config too large
for the management API, and what a RESOURCE_EXHAUSTED answer is explained as."""

from __future__ import annotations

import argparse

import grpc
import pytest

from meshgrpc.controlplane import commands


def apply_args(path) -> argparse.Namespace:
    return argparse.Namespace(file=str(path), replace=False, dry_run=False, allow_empty=False)


def test_a_config_larger_than_the_message_limit_is_refused_before_sending(tmp_path, monkeypatch):
    path = tmp_path / "mesh.yaml"
    path.write_text("clusters: [{name: a}, {name: b}]\n")
    assert commands._apply_request(apply_args(path)).ByteSize() == 12
    monkeypatch.setattr(commands, "MAX_MESSAGE_BYTES", 11)
    with pytest.raises(commands._Failed) as refused:
        commands._apply_request(apply_args(path))
    assert refused.value.code == 2
    assert str(refused.value) == (f"{path}: the config is 12 bytes as a message, more than the management API's "
                                  "limit of 11 bytes")


def test_a_file_past_a_parsing_bound_exits_2_and_an_invalid_one_exits_1(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("clusters: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(commands._Failed) as refused:
        commands._apply_request(apply_args(deep))
    assert refused.value.code == 2 and "nested deeper than the limit of 64 levels" in str(refused.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters: [{name: a, lb_polcy: RANDOM}]\n")
    with pytest.raises(commands._Failed) as invalid:
        commands._apply_request(apply_args(bad))
    assert invalid.value.code == 1 and "clusters[0].lb_polcy" in str(invalid.value)


def test_resource_exhausted_names_the_management_apis_limit():
    code, message = commands._explain("cp:15010", grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      "Received message larger than max (40000000 vs. 33554432)")
    assert code == 2
    assert message == ("error (RESOURCE_EXHAUSTED): Received message larger than max (40000000 vs. 33554432) "
                       "(the management API carries messages of at most 32 MiB)")
