"""`meshgrpc validate -f FILE` run as a real process: summary and exit 0 for a
good file, every error on its own line and exit 1 for a bad one."""

from __future__ import annotations

import os

from tests.support.procs import REPO, run_meshgrpc

EXAMPLE = os.path.join(REPO, "examples", "mesh.yaml")

BAD = """\
clusters:
  - name: greeter
    lb_polcy: ROUND_ROBIN
endpoints:
  - cluster: greeter
    endpoints:
      - {address: "127.0.0.1:50051", weight: three}
"""

BAD_SEMANTICS = """\
clusters:
  - name: greeter
endpoints:
  - cluster: greeter
    endpoints:
      - {address: "127.0.0.1:70000"}
routes:
  - name: default
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route:
              weighted_clusters: [{name: greeter, weight: 0}, {name: missing, weight: 0}]
"""


def test_good_file_prints_a_summary_and_exits_0():
    result = run_meshgrpc("validate", "-f", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXAMPLE}: valid (2 clusters, 3 endpoints in 2 sets, 1 route config, 1 listener)\n"


def test_structural_errors_are_each_printed_and_exit_1(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = run_meshgrpc("validate", "-f", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{path}: clusters[0].lb_polcy: unknown field; did you mean "lb_policy"?',
        f'{path}: endpoints[0].endpoints[0].weight: expected an integer, got "three"',
        f"{path}: invalid (2 errors)",
    ]


def test_semantic_errors_are_each_printed_and_exit_1(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_SEMANTICS)
    result = run_meshgrpc("validate", "-f", str(path))
    assert result.returncode == 1
    route = "routes[0].virtual_hosts[0].routes[0].route.weighted_clusters"
    assert sorted(result.stderr.splitlines()) == sorted([
        f'{path}: endpoints[0].endpoints[0].address: port "70000" is out of range 1-65535',
        f'{path}: {route}[1].name: cluster "missing" does not exist',
        f"{path}: {route}: weights sum to 0",
        f"{path}: invalid (3 errors)",
    ])


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "absent.yaml"
    result = run_meshgrpc("validate", "-f", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{path}: no such file"
