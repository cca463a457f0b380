"""`meshgrpc proxy --workers N|auto`: how many proxy processes share the port."""

from __future__ import annotations

import os

import pytest

from meshgrpc.cli import _parser


def workers(value: str) -> int:
    return _parser().parse_args(["proxy", "--node-id", "p", "--workers", value]).workers


def test_auto_is_one_worker_per_core_this_process_may_run_on():
    assert workers("auto") == len(os.sched_getaffinity(0))


def test_a_number_is_taken_as_given_and_one_is_the_default():
    assert workers("3") == 3
    assert _parser().parse_args(["proxy", "--node-id", "p"]).workers == 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_anything_else_is_refused_with_the_value_and_the_rule(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        workers(value)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --workers: {value!r} is not a number of workers (1 or more, or auto: one per core)" in err
