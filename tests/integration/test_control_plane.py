"""The control plane as a real process, on each store (SQLite and a real 3-member
etcd): serving the example, apply/get/delete via the CLI, file edits, SIGKILL and
restart, status with a NACKing client."""

from __future__ import annotations

import json
import shutil
import signal
import time

from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.identity.ca import CertificateAuthority
from tests.integration.cp_support import (EXAMPLE, DiscoveryProbe, cli, endpoint_addresses, start_control_plane,
                                          versions_of)
from tests.support.procs import meshgrpc, poll_until

EXTRA_CLUSTER = """
clusters:
  - name: payments
    lb_policy: LEAST_REQUEST
endpoints:
  - cluster: payments
    endpoints: [{address: "127.0.0.1:6000"}]
"""


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def get_json(address: str, kind: str = "all") -> dict:
    result = cli(address, "get", kind, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def names(config: dict, field: str) -> list[str]:
    key = "cluster" if field == "endpoints" else "name"
    return [r[key] for r in config.get(field, [])]


def test_the_example_config_is_served_to_a_discovery_client(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        with DiscoveryProbe(address, "probe-1") as probe:
            poll_until(lambda: all(probe.responses(t) for t in (CLUSTER, ENDPOINTS, ROUTES)), 10,
                       "the probe got every type")
            assert sorted(c.name for c in probe.latest(CLUSTER)) == ["greeter", "greeter-canary"]
            assert endpoint_addresses(probe.latest(ENDPOINTS), "greeter") == {"127.0.0.1:50051", "127.0.0.1:50052"}
            assert [r.name for r in probe.latest(ROUTES)] == ["default"]
            status = poll_until(lambda: (r := cli(address, "status")).stdout.count("SYNCED") == len(TYPE_ORDER) and r, 10,
                                "status shows the probe synced on every type")
            assert "probe-1" in status.stdout
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_apply_get_delete_through_the_cli(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        extra = write(tmp_path / "extra.yaml", EXTRA_CLUSTER)
        dry = cli(address, "apply", "-f", extra, "--dry-run")
        assert dry.returncode == 0 and "added cluster payments" in dry.stdout and "dry run" in dry.stdout
        assert "payments" not in names(get_json(address), "clusters")

        before = versions_of(cli(address, "get", "all").stdout)
        applied = cli(address, "apply", "-f", extra)
        assert applied.returncode == 0, applied.stderr
        assert "added cluster payments" in applied.stdout and "+lb_policy: LEAST_REQUEST" in applied.stdout
        assert cli(address, "apply", "-f", extra).stdout == "no changes\n"
        got = cli(address, "get", "clusters", "payments")
        after = versions_of(got.stdout)
        assert got.returncode == 0 and after["clusters"] != before["clusters"]
        assert after["routes"] == before["routes"]       # only the types that changed get a new version
        assert "name: payments" in got.stdout and "greeter" not in got.stdout

        refused = cli(address, "delete", "cluster", "greeter")
        assert refused.returncode == 1 and "default" in refused.stderr and "FAILED_PRECONDITION" in refused.stderr

        deleted = cli(address, "delete", "cluster", "payments")
        assert deleted.returncode == 0 and "removed cluster payments" in deleted.stdout
        assert "removed endpoints payments" in deleted.stdout     # its endpoint set goes with it
        config = get_json(address)
        assert "payments" not in names(config, "clusters") + names(config, "endpoints")
        assert cli(address, "delete", "route", "nope").returncode == 1
    finally:
        proc.kill()


def test_a_bad_apply_exits_1_with_every_error_and_changes_nothing(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        before = cli(address, "get", "all").stdout
        bad = write(tmp_path / "bad.yaml", """
clusters: [{name: payments}]
endpoints: [{cluster: payments, endpoints: [{address: "127.0.0.1:99999"}]}]
routes:
  - name: default
    virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: nowhere}}]}]
""")
        result = cli(address, "apply", "-f", bad)
        assert result.returncode == 1
        assert "endpoints[0].endpoints[0].address" in result.stderr
        assert "routes[0].virtual_hosts[0].routes[0].route" in result.stderr
        assert cli(address, "get", "all").stdout == before     # same resources, same versions

        unknown_field = write(tmp_path / "typo.yaml", "clusters: [{name: x, lb_polcy: RANDOM}]\n")
        result = cli(address, "apply", "-f", unknown_field)
        assert result.returncode == 1 and "clusters[0]" in result.stderr and "lb_policy" in result.stderr
        assert cli(address, "get", "all").stdout == before
    finally:
        proc.kill()


def test_file_edits_are_applied_and_bad_edits_are_logged_and_ignored(tmp_path, backing):
    config = tmp_path / "mesh.yaml"
    shutil.copy(EXAMPLE, config)
    proc, address = start_control_plane(backing, "--config", str(config))
    try:
        config.write_text("clusters: [{name: payments\n")                 # a YAML syntax error
        proc.wait_for_line(r"ignoring the edit of .*mesh\.yaml", 10)
        assert "payments" not in names(get_json(address), "clusters")

        good = open(EXAMPLE).read().replace("clusters:\n", "clusters:\n  - name: payments\n", 1)
        config.write_text(good)
        poll_until(lambda: "payments" in names(get_json(address), "clusters"), 10, "the edit was applied")

        bad = good.replace("- name: payments\n", "- name: payments\n    lb_policy: FASTEST\n", 1).replace(
            "weight: 90", "weight: -1")
        config.write_text(bad)
        proc.wait_for_line(r"clusters\[0\]\.lb_policy", 10)   # every error is logged with its path
        proc.wait_for_line(r"weighted_clusters\[0\]\.weight", 5)
        assert "payments" in names(get_json(address), "clusters")
        assert cli(address, "get", "clusters", "payments").stdout.count("lb_policy") == 0  # previous config stays
    finally:
        proc.kill()


def test_sigkill_and_restart_keeps_config_and_versions_with_and_without_the_file(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        first = versions_of(cli(address, "get", "all").stdout)
        assert cli(address, "apply", "-f", write(tmp_path / "extra.yaml", EXTRA_CLUSTER)).returncode == 0
        before = cli(address, "get", "all").stdout
        assert versions_of(before)["clusters"] != first["clusters"] and versions_of(before)["routes"] == first["routes"]
    finally:
        proc.kill()

    proc, address = start_control_plane(backing, "--config", EXAMPLE)   # the same, unchanged file
    try:
        assert cli(address, "get", "all").stdout == before
    finally:
        assert proc.kill() == -signal.SIGKILL

    proc, address = start_control_plane(backing)                          # no file at all
    try:
        assert cli(address, "get", "all").stdout == before
        with DiscoveryProbe(address, "after-restart") as probe:
            poll_until(lambda: probe.responses(CLUSTER), 10, "clusters served after restart")
            assert probe.responses(CLUSTER)[-1].version_info == versions_of(before)["clusters"]
            assert "payments" in {c.name for c in probe.latest(CLUSTER)}
    finally:
        proc.kill()


def test_a_changed_file_at_restart_is_applied_and_a_bad_one_refuses_to_start(tmp_path, backing):
    config = tmp_path / "mesh.yaml"
    shutil.copy(EXAMPLE, config)
    proc, address = start_control_plane(backing, "--config", str(config))
    first = versions_of(cli(address, "get", "all").stdout)
    proc.kill()
    config.write_text(open(EXAMPLE).read().replace("clusters:\n", "clusters:\n  - name: payments\n", 1))
    proc, address = start_control_plane(backing, "--config", str(config))
    try:
        assert "payments" in names(get_json(address), "clusters")
        assert versions_of(cli(address, "get", "clusters").stdout)["clusters"] != first["clusters"]
    finally:
        proc.kill()

    config.write_text("clusters: [{name: ''}]\n")
    refused = meshgrpc("control-plane", "--listen", "127.0.0.1:0", *backing.args, "--config", str(config))
    assert refused.popen.wait(20) == 1
    refused.wait_for_line(r"refusing to start: .*", 5)
    refused.wait_for_line(r"clusters\[0\]\.name", 5)


def test_a_nacking_client_shows_as_nacked_with_its_reason_in_status(tmp_path, backing):
    proc, address = start_control_plane(backing, "--config", EXAMPLE)
    try:
        reason = "route default: regex does not compile"
        with DiscoveryProbe(address, "nacker", nack={ROUTES: reason}):
            result = poll_until(lambda: (r := cli(address, "status")).returncode == 0 and "NACKED" in r.stdout and r,
                                10, "status shows the NACK")
            row = next(line for line in result.stdout.splitlines() if line.startswith("nacker"))
            versions = versions_of(result.stdout)
            assert f"SYNCED {versions['clusters']}" in row and f"SYNCED {versions['endpoints']}" in row
            assert f"NACKED {versions['routes']} ({reason})" in row
            assert "127.0.0.1" in row
    finally:
        proc.kill()


def test_commands_say_clearly_when_the_control_plane_cannot_be_reached(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(CertificateAuthority.create("mesh.local", time.time()).bundle_pem)
    for args in (["get", "all"], ["status"], ["delete", "route", "x"], ["apply", "-f", EXAMPLE],
                 ["register", "--cluster", "c", "--address", "127.0.0.1:1"], ["token", "list"]):
        for credentials in (["--insecure"], ["--ca-file", str(bundle)]):
            result = cli("127.0.0.1:1", *args, *credentials)
            assert result.returncode == 2, (args, result.stderr)
            assert result.stderr.startswith("cannot reach the control plane at 127.0.0.1:1: "), result.stderr
            assert result.stderr.count("\n") == 1


def test_commands_say_clearly_when_they_have_no_ca_bundle(tmp_path):
    for args in (["get", "all"], ["register", "--cluster", "c", "--address", "127.0.0.1:1"]):
        result = cli("127.0.0.1:1", *args, "--ca-file", str(tmp_path / "missing.pem"))
        assert result.returncode == 2, (args, result.stderr)
        assert f"cannot read the control plane's CA bundle {tmp_path / 'missing.pem'}: No such file" \
            in result.stderr, result.stderr
