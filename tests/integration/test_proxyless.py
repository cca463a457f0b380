"""Proxyless gRPC clients served by the control plane: a real grpcio client in its
own process dials `xds:///greeter.mesh` with GRPC_XDS_BOOTSTRAP from `meshgrpc
bootstrap`, against a real control plane and interop backends on loopback."""

from __future__ import annotations

import re
import time

import pytest

from tests.support.mesh import Mesh, clusters, mesh_config, route, route_config
from tests.support.procs import poll_until
from tests.support.proxyless import ProxylessClient, with_listener

pytestmark = pytest.mark.timeout(180)

ENVOY_COLUMNS = 4  # LDS RDS CDS EDS


def proxyless_row(status_text: str, node_id: str) -> str:
    """The row of `node_id` in the proxyless table of `meshgrpc status` ('' if absent)."""
    table = status_text.split("\nNODE ", 2)
    rows = table[2].splitlines()[1:] if len(table) > 2 else []
    return next((r for r in rows if r.split(" ", 1)[0] == node_id), "")


def wait_proxyless_synced(mesh: Mesh, node_id: str, timeout: float = 20.0) -> str:
    def synced():
        text = mesh.status()
        return text if proxyless_row(text, node_id).count("SYNCED") == ENVOY_COLUMNS else None
    return poll_until(synced, timeout, f"meshgrpc status shows proxyless {node_id} SYNCED")


def greeter_mesh(backends: dict[str, list[str]], routes: list[dict], lb_policy: str = "ROUND_ROBIN") -> dict:
    return with_listener(mesh_config(backends, routes, lb_policy=lb_policy))


def share(counter, label: str) -> float:
    return counter[label] / max(1, sum(counter.values()))


def test_round_robin_reaches_every_endpoint_of_the_cluster(tmp_path):
    with Mesh(tmp_path) as mesh:
        addresses = [mesh.start_backend(n) for n in ("a", "b", "c")]
        mesh.start_control_plane(greeter_mesh({"greeter": addresses}, [route("/", "greeter")]))
        client = ProxylessClient(mesh, "app-1", calls=300)
        client.wait_exit()
        assert client.failures() == []
        assert set(client.backends()) == {"a", "b", "c"}
        assert sum(client.backends().values()) == 300


def test_status_lists_the_proxyless_client_with_its_kind_and_what_it_cannot_get(tmp_path):
    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a")
        mesh.start_control_plane(greeter_mesh({"greeter": [a]}, [route("/", "greeter")], lb_policy="PEAK_EWMA"))
        client = ProxylessClient(mesh, "app-1", duration=60)
        text = wait_proxyless_synced(mesh, "app-1")
        row = proxyless_row(text, "app-1")
        assert "gRPC" in row and "Python" in row, text  # the Node's user agent
        assert "app-1: not available to this proxyless client:" in text
        assert "cluster greeter: lb_policy: PEAK_EWMA is served as round_robin" in text
        log = mesh.control_plane.wait_for_line(r"proxyless node 'app-1' cannot get: cluster greeter: lb_policy")
        assert log
        assert client.failures() == []


def test_weighted_split_holds_and_follows_an_apply_within_two_seconds(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        split = lambda w: [route("/", weighted={"greeter": w[0], "canary": w[1]}, name="split")]
        mesh.start_control_plane(greeter_mesh({"greeter": [a], "canary": [b]}, split((90, 10))))
        client = ProxylessClient(mesh, "app-1", threads=4, duration=90)
        client.wait_calls(2000)
        got = client.backends()
        assert client.failures() == []
        assert abs(share(got, "b") - 0.10) <= 0.03, got
        mesh.apply(with_listener({**clusters({"greeter": [a], "canary": [b]}),
                                  "routes": [route_config(split((50, 50)))]}))
        followed = time.monotonic() + 2.0
        client.wait_calls(4000, after=followed)
        after = client.backends(after=followed)
        assert abs(share(after, "b") - 0.50) <= 0.03, after
        assert client.failures() == []


def test_header_route_sends_only_tagged_calls_to_the_canary(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        # The path regex goes to gRPC as RE2 (a regex it cannot compile would be NACKed, and no call would pass).
        routes = [route("/", "canary", regex=r"/grpc\.testing\.TestService/Unary(Call)?\w{0,3}",
                        headers=[{"name": "x-canary", "exact": "true"}], name="canary"),
                  route("/", "greeter")]
        mesh.start_control_plane(greeter_mesh({"greeter": [a], "canary": [b]}, routes))
        client = ProxylessClient(mesh, "app-1", tag_every=2, calls=400)
        client.wait_exit()
        assert client.failures() == []
        assert client.backends(tagged=True) == {"b": 200}
        assert client.backends(tagged=False) == {"a": 200}


def test_endpoint_removed_by_apply_stops_receiving_calls_within_a_second(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        routes = [route("/", "greeter")]
        mesh.start_control_plane(greeter_mesh({"greeter": [a, b]}, routes))
        client = ProxylessClient(mesh, "app-1", duration=60)
        client.wait_calls(100)
        assert set(client.backends()) == {"a", "b"}
        mesh.apply(greeter_mesh({"greeter": [a]}, routes))
        deadline = time.monotonic() + 1.0
        calls = client.wait_calls(200, after=deadline)
        assert {c.label for c in calls} == {"a"}
        assert client.failures() == []


def test_client_rides_out_a_killed_control_plane_and_resyncs_after_restart(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        address = mesh.start_control_plane(greeter_mesh({"greeter": [a, b]}, [route("/", "greeter")]))
        client = ProxylessClient(mesh, "app-1", duration=90)
        wait_proxyless_synced(mesh, "app-1")
        mesh.kill_control_plane()
        killed = time.monotonic()
        client.wait_calls(1, after=killed + 10.0, timeout=20)
        during = [c for c in client.calls(after=killed) if c.started < killed + 10.0]
        assert len(during) > 100 and [c for c in during if not c.ok] == []
        assert set(client.backends(after=killed)) == {"a", "b"}
        mesh.start_control_plane(listen=address, attempts=5)
        wait_proxyless_synced(mesh, "app-1", timeout=60)
        assert client.failures() == []


def test_config_the_client_rejects_shows_nacked_with_its_reason_and_the_last_good_config_stays(tmp_path):
    with Mesh(tmp_path) as mesh:
        a, b = mesh.start_backend("a"), mesh.start_backend("b")
        routes = [route("/", "greeter")]
        mesh.start_control_plane(greeter_mesh({"greeter": [a, b]}, routes),
                                 extra=("--proxyless-translator", "tests.support.xds_hooks:ring_hash_as_maglev"))
        client = ProxylessClient(mesh, "app-1", duration=60)
        wait_proxyless_synced(mesh, "app-1")
        mesh.apply(greeter_mesh({"greeter": [a, b]}, routes, lb_policy="RING_HASH"))
        applied = time.monotonic()

        def nacked():
            row = proxyless_row(mesh.status(), "app-1")
            return row if "NACKED" in row else None
        row = poll_until(nacked, 10, "meshgrpc status shows app-1 NACKED")
        # The CDS cell carries gRPC's own reason; the other types stay SYNCED.
        assert re.search(r"NACKED \S+ \(.*field:lb_policy error:LB policy is not supported", row), row
        assert row.count("SYNCED") == ENVOY_COLUMNS - 1, row
        client.wait_calls(200, after=applied + 1.0)
        assert client.failures() == []
        assert set(client.backends(after=applied + 1.0)) == {"a", "b"}  # still round robin


def test_retries_configured_on_the_route_are_made_by_the_client(tmp_path):
    with Mesh(tmp_path) as mesh:
        good, bad = mesh.start_backend("good"), mesh.start_backend("bad", "interop", "--fail-code", "14")
        backends = {"greeter": [good, bad]}
        mesh.start_control_plane(greeter_mesh(backends, [route("/", "greeter")]))
        client = ProxylessClient(mesh, "app-1", duration=90)
        client.wait_calls(400)
        without = client.calls()
        assert 0.3 < len([c for c in without if not c.ok]) / len(without) < 0.7  # half the calls fail
        retrying = route("/", "greeter")
        retrying["route"]["retry_policy"] = {"retry_on": ["UNAVAILABLE"], "num_retries": 2}
        mesh.apply(greeter_mesh(backends, [retrying]))
        settled = time.monotonic() + 1.0
        calls = client.wait_calls(1000, after=settled)
        failed = [c for c in calls if not c.ok]
        assert len(failed) / len(calls) < 0.01, failed[:5]


def test_listeners_are_got_and_deleted_and_keep_their_route_config(tmp_path):
    with Mesh(tmp_path) as mesh:
        a = mesh.start_backend("a")
        mesh.start_control_plane(greeter_mesh({"greeter": [a]}, [route("/", "greeter")]))
        got = mesh_cli(mesh, "get", "listeners")
        assert "name: greeter.mesh" in got and "route_config: default" in got
        refused = mesh_cli(mesh, "delete", "route", "default", code=1)
        assert "route config 'default' is used by listener(s) greeter.mesh" in refused
        mesh_cli(mesh, "delete", "listener", "greeter.mesh")
        assert "greeter.mesh" not in mesh_cli(mesh, "get", "all")


def mesh_cli(mesh: Mesh, *args: str, code: int = 0) -> str:
    from tests.support.procs import run_meshgrpc
    result = run_meshgrpc(*args, "--control-plane", mesh.cp_address)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    return result.stdout + result.stderr
