"""Mutual TLS between proxies on loopback, real processes: each service's app behind
one sidecar (outbound --listen, inbound --inbound with mTLS), a TLS control plane
issuing the workload certificates; clusters with `transport` mode MUTUAL_TLS and
their expected `peer_identity`. Issue 10, done-when 1 and 2."""

from __future__ import annotations

import re
import socket
import ssl
import time

import grpc
import pytest

from tests.support.mesh import Load, Mesh, interop_unary
from tests.support.procs import run_meshgrpc
from tests.support.sidecars import MUTUAL_TLS, endpoints_of, services_config, start_service

FRONTEND_ID = "spiffe://mesh.local/service/frontend"
BACKEND_ID = "spiffe://mesh.local/service/backend"


def test_two_services_call_each_other_over_mutual_tls_and_plaintext_is_refused(tmp_path):
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config({"frontend": "backend", "backend": "frontend"}, MUTUAL_TLS))
        front = start_service(mesh, tmp_path, "frontend")
        back = start_service(mesh, tmp_path, "backend")
        # Each sidecar registered its inbound listener into its own service's cluster.
        for service in (front, back):
            service.proxy.proc.wait_for_line(rf"registered {service.inbound} in cluster '{service.name}'", 5)
        for caller, callee in ((front, back), (back, front)):
            caller.proxy.wait_config(lambda d: callee.inbound in str(d), what=f"{callee.name}'s inbound endpoint")
            with caller.proxy.channel() as channel:
                assert interop_unary(channel) == callee.name
            # The callee's inbound read the caller's certificate at the handshake.
            callee.proxy.proc.wait_for_line(
                rf"inbound connection from 127\.0\.0\.1:\d+: TLSv1\.3, peer spiffe://mesh\.local/service/"
                rf"{caller.name} \(certificate valid until [^)]+\)$", 5)
        # Plaintext h2c to the inbound port never gets a connection.
        with grpc.insecure_channel(back.inbound) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                interop_unary(channel, timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _raw_preface_answer(back.inbound) == b""
        # TLS with the mesh's CA but no client certificate is refused at the handshake.
        assert _tls_without_certificate_refused(back.inbound, mesh)
        assert back.proxy.proc.output().count("inbound connection from") == 1


def _raw_preface_answer(address: str) -> bytes:
    """What the port answers an HTTP/2 prior-knowledge preface with, until it closes."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
                if len(got) > 4096:
                    break
        except ConnectionResetError:
            pass
    # A TLS server answers garbage with at most an alert record (content type 21), never HTTP/2.
    return b"" if not got or got[:1] == b"\x15" else got


def _tls_without_certificate_refused(address: str, mesh: Mesh) -> bool:
    import os
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(os.path.join(mesh.data_dir, "ca.pem"))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                # TLS 1.3: the server checks the client's certificate after the client's
                # handshake completes; its refusal arrives as an alert on the first read.
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                return tls.recv(1024) == b""
        except (ssl.SSLError, ConnectionResetError):
            return True


def test_an_endpoint_with_the_wrong_identity_is_refused_and_calls_go_to_a_correct_one(tmp_path):
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config({"frontend": "backend", "backend": "frontend", "impostor": "frontend"},
                                                 MUTUAL_TLS))
        front = start_service(mesh, tmp_path, "frontend")
        back = start_service(mesh, tmp_path, "backend")
        impostor = start_service(mesh, tmp_path, "impostor")
        # The impostor's inbound is listed first in backend's cluster (backend's own sidecar
        # registered the second): round robin tries it.
        mesh.apply(endpoints_of([], {"backend": [impostor.inbound]}))
        front.proxy.wait_config(lambda d: impostor.inbound in str(d) and back.inbound in str(d),
                                what="both endpoints of backend")
        with front.proxy.channel() as channel:
            answered = [interop_unary(channel) for _ in range(10)]
        assert answered == ["backend"] * 10
        front.proxy.proc.wait_for_line(
            rf"connect to {impostor.inbound} failed \(peer identity mismatch: expected {BACKEND_ID}, the endpoint "
            rf"presented spiffe://mesh\.local/service/impostor\)", 5)
        # backend's sidecar stops: it unregisters its endpoint, and the impostor is left alone.
        assert back.proxy.proc.stop() == 0
        back.proxy.proc.wait_for_line(rf"unregistered {back.inbound}", 1)
        front.proxy.wait_config(lambda d: back.inbound not in str(d), what="backend without its real endpoint")
        # The impostor alone: the call fails UNAVAILABLE naming both identities; its app saw nothing.
        with front.proxy.channel() as channel:
            with pytest.raises(grpc.RpcError) as refused:
                interop_unary(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"peer identity mismatch: expected {BACKEND_ID}, the endpoint presented " \
               "spiffe://mesh.local/service/impostor" in refused.value.details()
        assert mesh.backend_stats("impostor")["calls"] == 0


def test_peer_identity_names_who_the_endpoints_must_be(tmp_path):
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config(
            {"frontend": "backend", "legacy": "frontend"},
            {**MUTUAL_TLS, "peer_identity": "spiffe://mesh.local/service/legacy"}))
        front = start_service(mesh, tmp_path, "frontend")
        legacy = start_service(mesh, tmp_path, "legacy")
        mesh.apply(endpoints_of([], {"backend": [legacy.inbound]}))
        front.proxy.wait_config(lambda d: legacy.inbound in str(d), what="backend's endpoint")
        with front.proxy.channel() as channel:
            assert interop_unary(channel) == "legacy"


def test_a_proxy_without_a_workload_certificate_answers_unavailable_for_a_mutual_tls_cluster(tmp_path):
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config({"default": "backend", "backend": "backend"}, MUTUAL_TLS))
        back = start_service(mesh, tmp_path, "backend")
        operator = mesh.start_proxy("operator-1")  # the admin token: no --service, no certificate
        operator.wait_config(lambda d: back.inbound in str(d), what="backend's endpoint")
        with operator.channel() as channel:
            with pytest.raises(grpc.RpcError) as refused:
                interop_unary(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == ("cluster backend needs MUTUAL_TLS and this proxy has no workload "
                                           "certificate (start it with --service and --token-file)")


# ---------------------------------------------------------------- authorization on the inbound side

UNARY = "/grpc.testing.TestService/UnaryCall"


def frontend_only(dry_run: bool = False) -> dict:
    return {"authorization_policies": [{"name": "frontend-only", "service": "backend", "action": "ALLOW",
                                        "rules": [{"from": [FRONTEND_ID], "to": [UNARY]}], "dry_run": dry_run}]}


def _policies_in_force(proxy, dry_run: bool):
    def check(dump):
        authz = dump["effective"]["inbound_authorization"]
        return authz["policies"] == ["frontend-only"] and \
            dump["config"].get("authorization_policies", [{}])[0].get("dry_run", False) == dry_run
    proxy.wait_config(check, what=f"frontend-only in force (dry_run={dry_run})")


def test_an_allow_policy_lets_frontend_in_and_refuses_another_service_and_dry_run_only_counts(tmp_path):
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config(
            {"frontend": "backend", "other": "backend", "backend": "frontend"}, MUTUAL_TLS))
        front = start_service(mesh, tmp_path, "frontend")
        other = start_service(mesh, tmp_path, "other")
        back = start_service(mesh, tmp_path, "backend")
        # No policy for the service: every caller passes (Istio's default).
        for caller in (front, other):
            caller.proxy.wait_config(lambda d: back.inbound in str(d), what="backend's endpoint")
            with caller.proxy.channel() as channel:
                assert interop_unary(channel) == "backend"
        mesh.apply(frontend_only())
        _policies_in_force(back.proxy, dry_run=False)
        with front.proxy.channel() as channel:
            assert interop_unary(channel) == "backend"
        with other.proxy.channel() as channel:
            with pytest.raises(grpc.RpcError) as refused:
                interop_unary(channel)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == (f"spiffe://mesh.local/service/other may not call {UNARY}: "
                                           "denied by authorization policy frontend-only")
        assert back.proxy.metric("meshgrpc_proxy_authz_decisions_total", policy="frontend-only",
                                 decision="deny") == 1
        assert back.proxy.metric("meshgrpc_proxy_authz_decisions_total", policy="frontend-only",
                                 decision="allow") == 1
        # Dry run: both pass, the other service's call is counted as one would-deny.
        mesh.apply(frontend_only(dry_run=True))
        _policies_in_force(back.proxy, dry_run=True)
        for caller in (front, other):
            with caller.proxy.channel() as channel:
                assert interop_unary(channel) == "backend"
        assert back.proxy.metric("meshgrpc_proxy_authz_decisions_total", policy="frontend-only",
                                 decision="would_deny") == 1
        back.proxy.proc.wait_for_line(r"dry-run authorization policy frontend-only would deny "
                                      rf"spiffe://mesh\.local/service/other calling {UNARY}", 5)
        # The refused call never reached the app: 2 + 1 + 2 calls did.
        assert mesh.backend_stats("backend")["calls"] == 5


@pytest.mark.parametrize("flags, message", [
    (("--inbound", "127.0.0.1:0"), "--inbound and --app go together"),
    (("--inbound", "127.0.0.1:0", "--app", "127.0.0.1:1"), "--inbound needs --service and its join token"),
    (("--service", "s", "--inbound", "0.0.0.0:15006", "--app", "127.0.0.1:1"),
     "--inbound 0.0.0.0:15006 binds every address; say which one other proxies reach it at with "
     "--inbound-endpoint HOST:PORT"),
    (("--service", "s", "--inbound", "127.0.0.1:0", "--app", "nowhere"), '--app: "nowhere" is not host:port'),
])
def test_inbound_flags_that_cannot_work_are_refused_at_start(flags, message):
    result = run_meshgrpc("proxy", "--node-id", "n", "--control-plane", "127.0.0.1:1", *flags)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


# ---------------------------------------------------------------- certificate rotation under load

ROTATION_SECONDS = 90.0
CALLERS = 16


def _renewals(proxy, service: str) -> int:
    """Certificates the proxy installed after its first."""
    return proxy.proc.output().count(f"certificate for spiffe://mesh.local/service/{service} valid until") - 1


def _expiries(lines: str, pattern: str) -> set[str]:
    return set(re.findall(pattern + r".*\(certificate valid until ([^)]+)\)", lines))


@pytest.mark.timeout(ROTATION_SECONDS + 150)
def test_certificates_rotate_under_load_without_a_failed_call(tmp_path):
    """30 s certificates (renewed every 15 s) under 16 callers for 90 s. The inbound
    asks connections to reconnect every 10 s (max_connection_age), so at every
    renewal there are live connections made with the old certificate (they carry
    on) and, after it, new handshakes that must present and accept the new one."""
    with Mesh(tmp_path) as mesh:
        mesh.start_control_plane(services_config({"frontend": "backend", "backend": "frontend"}, MUTUAL_TLS),
                                 extra=("--cert-lifetime", "30s"))
        front = start_service(mesh, tmp_path, "frontend")
        back = start_service(mesh, tmp_path, "backend", "--limit", "max_connection_age=10")
        front.proxy.wait_config(lambda d: back.inbound in str(d), what="backend's inbound endpoint")
        before = {s.name: _renewals(s.proxy, s.name) for s in (front, back)}
        started = time.monotonic()
        with Load(front.proxy.address, interop_unary, threads=CALLERS) as load:
            load.wait_calls(CALLERS, timeout=20)
            while time.monotonic() - started < ROTATION_SECONDS:
                assert not load.failures, load.failures[:5]
                time.sleep(1.0)  # the load runs for its length: nothing to wait for but time
        assert load.failures == []
        assert load.ok > CALLERS * 100, load.ok
        during = {s.name: _renewals(s.proxy, s.name) - before[s.name] for s in (front, back)}
        assert during["frontend"] >= 2 and during["backend"] >= 2, during
        # New inbound connections presented frontend's renewed certificates, and the
        # outbound side accepted backend's renewed ones.
        seen_by_inbound = _expiries(back.proxy.proc.output(), r"inbound connection from .*service/frontend")
        seen_by_outbound = _expiries(front.proxy.proc.output(), rf"mutual TLS connection to {back.inbound}")
        assert len(seen_by_inbound) >= 3 and len(seen_by_outbound) >= 3, (seen_by_inbound, seen_by_outbound)
        assert back.proxy.metric("meshgrpc_proxy_edge_limit_events_total", side="inbound", limit="aged_out") >= 5
