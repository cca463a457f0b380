"""Identity and access on a real control plane over TLS: credentials on every
management call (tokens and roles), the first-start admin token found with no
flags, another account on the host refused, discovery streams authenticated and
scoped, node ids bound to one identity, proxies joining with a join token and
renewing, and a revoked token that cannot renew."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import tempfile

import grpc
import pytest

from meshapi.v1 import discovery_pb2, discovery_pb2_grpc, management_pb2, management_pb2_grpc
from meshgrpc.config import resources
from meshgrpc.control_channel import ClientCredentials
from tests.integration.cp_support import EXAMPLE, cli, start_control_plane, versions_of
from tests.support.mesh import Mesh, mesh_config, route, route_config
from tests.support.procs import MESHGRPC, REPO, credentials, meshgrpc, poll_until, run_meshgrpc

SCRATCH_UID = 65534   # nobody: another account on the host


def data_dir_of(tmp_path) -> str:
    return str(tmp_path)


def token(address: str, *args: str) -> str:
    result = cli(address, "token", "create", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


def bundle_for_others(tmp_path) -> str:
    """A copy of the CA bundle another account can read (the data dir's is 0600)."""
    folder = tempfile.mkdtemp(prefix="meshgrpc-ca-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "ca.pem")
    with open(os.path.join(tmp_path, "ca.pem"), "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    os.chmod(path, 0o644)
    return path


def as_other_account(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs ARGS as the scratch account (no token of ours is readable there)."""
    if os.geteuid() != 0:
        pytest.fail("these tests run as root (make test does) to act as another account with setpriv")
    env = {k: v for k, v in os.environ.items() if k != "MESHGRPC_TOKEN"}
    return subprocess.run(["setpriv", f"--reuid={SCRATCH_UID}", f"--regid={SCRATCH_UID}", "--clear-groups", *args],
                          capture_output=True, text=True, timeout=60, cwd="/", input=input,
                          env={**env, "PYTHONUNBUFFERED": "1", "HOME": "/"})


# ---------------------------------------------------------------- management API

def test_another_account_cannot_change_the_mesh_without_a_credential(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    try:
        before = cli(address, "get", "all").stdout
        ca = bundle_for_others(tmp_path)
        change = os.path.join(os.path.dirname(ca), "change.yaml")
        with open(change, "w") as f:
            f.write("clusters: [{name: rogue}]\n")
        os.chmod(change, 0o644)
        attempts = {
            "apply": ["apply", "-f", change],
            "delete": ["delete", "route", "default"],
            "register": ["register", "--cluster", "greeter", "--address", "127.0.0.1:6666", "--weight", "100"],
        }
        for what, args in attempts.items():
            result = as_other_account(*MESHGRPC, *args, "--control-plane", address, "--ca-file", ca)
            assert result.returncode == 1, (what, result.stdout, result.stderr)
            assert "error (UNAUTHENTICATED): no credential" in result.stderr, (what, result.stderr)
        # Nor can that account read the secrets the control plane wrote.
        read = as_other_account("cat", os.path.join(tmp_path, "admin.token"))
        assert read.returncode != 0 and "Permission denied" in read.stderr
        assert cli(address, "get", "all").stdout == before   # nothing changed
    finally:
        proc.stop()


def test_the_data_dir_and_every_file_in_it_are_private_and_an_open_one_is_refused(tmp_path):
    data = tmp_path / "data"
    proc, address = start_control_plane(data, "--config", EXAMPLE)
    proc.stop()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    files = sorted(os.listdir(data))
    assert {"admin.token", "ca.pem", "ca.key", "tokens.json", "meshgrpc.db"} <= set(files)
    assert {f: stat.S_IMODE(os.stat(data / f).st_mode) for f in files} == {f: 0o600 for f in files}
    os.chmod(data / "meshgrpc.db", 0o644)
    refused = meshgrpc("control-plane", "--listen", "127.0.0.1:0", "--data-dir", str(data))
    assert refused.popen.wait(20) == 1
    refused.wait_for_line(r"meshgrpc\.db has mode 0644: others can read it \(chmod 600 ", 5)


def test_roles_decide_what_a_token_may_do(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    try:
        read = token(address, "--role", "read")
        as_read = {"MESHGRPC_TOKEN": read}
        got = run_meshgrpc("get", "clusters", "--control-plane", address, "--ca-file", str(tmp_path / "ca.pem"),
                           env=as_read)
        assert got.returncode == 0 and "greeter" in got.stdout, got.stderr
        applied = run_meshgrpc("apply", "-f", EXAMPLE, "--control-plane", address,
                               "--ca-file", str(tmp_path / "ca.pem"), env=as_read)
        assert applied.returncode == 1
        assert "error (PERMISSION_DENIED): Apply needs the admin role; this call's credential is read token" \
            in applied.stderr
        join = token(address, "--service", "greeter")
        made = run_meshgrpc("token", "create", "--role", "read", "--control-plane", address,
                            "--ca-file", str(tmp_path / "ca.pem"), env={"MESHGRPC_TOKEN": join})
        assert "PERMISSION_DENIED" in made.stderr and made.returncode == 1
        none = run_meshgrpc("status", "--control-plane", address, "--ca-file", str(tmp_path / "ca.pem"),
                            "--token-file", os.devnull)
        assert none.returncode == 1 and "error (UNAUTHENTICATED): no credential" in none.stderr
    finally:
        proc.stop()


def test_the_admin_token_written_at_first_start_works_with_no_flags(tmp_path):
    """The README's local flow: a control plane in a directory, the CLI beside it."""
    env = {k: v for k, v in os.environ.items() if k != "MESHGRPC_TOKEN"}
    proc = meshgrpc("control-plane", "--config", EXAMPLE, "--listen", "127.0.0.1:0", "--listen-mtls",
                    "127.0.0.1:0", cwd=str(tmp_path))
    try:
        address = proc.address("control-plane")
        result = subprocess.run([*MESHGRPC, "get", "clusters", "--control-plane", address], cwd=str(tmp_path),
                                capture_output=True, text=True, timeout=30, env={**env, "PYTHONPATH": REPO})
        assert result.returncode == 0, result.stderr
        assert "greeter-canary" in result.stdout
    finally:
        proc.stop()


def test_a_workload_registers_only_into_its_own_cluster(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    holder = None
    try:
        join = token(address, "--service", "greeter")
        ca = str(tmp_path / "ca.pem")
        elsewhere = run_meshgrpc("register", "--cluster", "greeter-canary", "--address", "127.0.0.1:7001",
                                 "--control-plane", address, "--ca-file", ca, env={"MESHGRPC_TOKEN": join})
        assert elsewhere.returncode == 1
        assert ("PERMISSION_DENIED): a workload of service greeter may register only into cluster 'greeter', "
                "not 'greeter-canary'") in elsewhere.stderr
        holder = meshgrpc("--log-level", "INFO", "register", "--cluster", "greeter", "--address", "127.0.0.1:7001",
                          "--control-plane", address, "--ca-file", ca, env={"MESHGRPC_TOKEN": join})
        holder.wait_for_line(r"registered 127\.0\.0\.1:7001", 15)
    finally:
        if holder is not None:
            holder.stop()
        proc.stop()


def test_authorization_policies_are_applied_got_and_deleted(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    try:
        policy = tmp_path / "policy.yaml"
        policy.write_text("""
authorization_policies:
  - name: frontend-only
    service: greeter
    action: ALLOW
    rules: [{from: ["spiffe://mesh.local/service/frontend"], to: ["/helloworld.Greeter/*"]}]
""")
        applied = cli(address, "apply", "-f", str(policy))
        assert applied.returncode == 0 and "added authorization_policy frontend-only" in applied.stdout, applied
        got = cli(address, "get", "authorization-policies")
        assert "spiffe://mesh.local/service/frontend" in got.stdout and "ALLOW" in got.stdout
        bad = tmp_path / "bad.yaml"
        bad.write_text("authorization_policies: [{name: x, service: greeter, action: DENY, rules: [{to: [Say]}]}]")
        refused = cli(address, "apply", "-f", str(bad))
        assert refused.returncode == 1 and "authorization_policies[0].rules[0].to[0]" in refused.stderr
        deleted = cli(address, "delete", "authorization-policy", "frontend-only")
        assert deleted.returncode == 0 and "removed authorization_policy frontend-only" in deleted.stdout
        assert "frontend" not in cli(address, "get", "authorization-policies").stdout
    finally:
        proc.stop()


# ---------------------------------------------------------------- discovery streams

async def _first_answer(target: str, creds: ClientCredentials, node_id: str, method: str = "sotw"):
    """The first response of a discovery stream (or the status that ended it), within 10 s."""
    async with creds.aio_channel(target) as channel:
        stub = discovery_pb2_grpc.DiscoveryStub(channel)
        node = discovery_pb2.Node(id=node_id)
        call = stub.StreamResources() if method == "sotw" else stub.DeltaResources()
        try:
            if method == "sotw":
                await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=resources.ROUTES))
            else:
                await call.write(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=resources.ROUTES,
                                                                     resource_names_subscribe=["*"]))
            return await asyncio.wait_for(call.read(), 10)
        except grpc.aio.AioRpcError as e:   # refused before or after the first request went out
            return e
        except asyncio.InvalidStateError:
            await call.code()
            return grpc.aio.AioRpcError(await call.code(), grpc.aio.Metadata(), grpc.aio.Metadata(),
                                        await call.details())
        finally:
            call.cancel()


def test_a_discovery_stream_without_a_credential_is_refused(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    try:
        ca = (tmp_path / "ca.pem").read_bytes()
        for method in ("sotw", "delta"):
            refused = asyncio.run(_first_answer(address, ClientCredentials(ca_bundle=ca), "intruder", method))
            assert isinstance(refused, grpc.aio.AioRpcError), refused
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED and "no credential" in refused.details()
        # The proxyless protocol too, and from another account on the host.
        script = (f"import asyncio, grpc\n"
                  f"from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2\n"
                  f"async def main():\n"
                  f"    creds = grpc.ssl_channel_credentials(open({bundle_for_others(tmp_path)!r}, 'rb').read())\n"
                  f"    async with grpc.aio.secure_channel({address!r}, creds) as ch:\n"
                  f"        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch).StreamAggregatedResources()\n"
                  f"        try:\n"
                  f"            await call.write(discovery_pb2.DiscoveryRequest(type_url='x'))\n"
                  f"            await asyncio.wait_for(call.read(), 10)\n"
                  f"        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):\n"
                  f"            pass\n"
                  f"        print((await call.code()).name, await call.details())\n"
                  f"asyncio.run(main())\n")
        result = as_other_account(sys.executable, "-c", script)
        assert result.stdout.startswith("UNAUTHENTICATED no credential"), (result.stdout, result.stderr)
    finally:
        proc.stop()


def test_a_node_id_cannot_be_claimed_by_a_second_stream_with_another_identity(tmp_path):
    proc, address = start_control_plane(tmp_path, "--config", EXAMPLE)
    try:
        ca = (tmp_path / "ca.pem").read_bytes()
        greeter = ClientCredentials(ca_bundle=ca, token=token(address, "--service", "greeter"))
        billing = ClientCredentials(ca_bundle=ca, token=token(address, "--service", "billing"))

        async def main():
            async with greeter.aio_channel(address) as channel:
                call = discovery_pb2_grpc.DiscoveryStub(channel).StreamResources()
                await call.write(discovery_pb2.DiscoveryRequest(node=discovery_pb2.Node(id="app-1"),
                                                                type_url=resources.ROUTES))
                await asyncio.wait_for(call.read(), 10)     # the first stream holds app-1
                stolen = await _first_answer(address, billing, "app-1")
                same = await _first_answer(address, greeter, "app-1")
                status = cli(address, "status").stdout
                call.cancel()
                return stolen, same, status
        stolen, same, status = asyncio.run(main())
        assert isinstance(stolen, grpc.aio.AioRpcError) and stolen.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "node id 'app-1' is held by a stream of another identity (service:greeter)" in stolen.details()
        assert isinstance(same, discovery_pb2.DiscoveryResponse)   # its own identity may open another
        assert status.count("app-1") == 1, status
    finally:
        proc.stop()


SCOPED = {
    **mesh_config({"greeter": ["127.0.0.1:7001"], "billing": ["127.0.0.1:7002"], "ledger": ["127.0.0.1:7003"]}),
    "routes": [route_config([route("/", "billing")], name="greeter"),
               {**route_config([route("/", "ledger")], name="shared"), "services": ["greeter", "audit"]},
               route_config([route("/", "greeter")], name="default")],
    "authorization_policies": [{"name": n, "service": svc, "action": "ALLOW", "rules": [{}]}
                               for n, svc in (("greeter-in", "greeter"), ("audit-in", "audit"))],
}


def test_a_workload_stream_carries_only_what_its_service_may_see(tmp_path):
    """Its own route config (named like the service), those whose `services` list it,
    the clusters and endpoints they reach, and its own service's authorization
    policies; operators see everything."""
    with Mesh(tmp_path) as mesh:
        address = mesh.start_control_plane(SCOPED)
        ca = (tmp_path / "data" / "ca.pem").read_bytes()

        def seen(creds: ClientCredentials, node: str) -> dict[str, list[str]]:
            async def main():
                async with creds.aio_channel(address) as channel:
                    call = discovery_pb2_grpc.DiscoveryStub(channel).StreamResources()
                    for t in resources.TYPE_ORDER:
                        await call.write(discovery_pb2.DiscoveryRequest(node=discovery_pb2.Node(id=node), type_url=t))
                    got = {}
                    while len(got) < len(resources.TYPE_ORDER):
                        r = await asyncio.wait_for(call.read(), 10)
                        got[r.type_url] = sorted(resources.resource_name(resources.unpack(r.type_url, a))
                                                 for a in r.resources)
                        await call.write(discovery_pb2.DiscoveryRequest(type_url=r.type_url, response_nonce=r.nonce,
                                                                        version_info=r.version_info))
                    call.cancel()
                    return {resources.SHORT_NAME[t]: v for t, v in got.items()}
            return asyncio.run(main())

        greeter = ClientCredentials(ca_bundle=ca, token=token(address, "--service", "greeter"))
        audit = ClientCredentials(ca_bundle=ca, token=token(address, "--service", "audit"))
        other = ClientCredentials(ca_bundle=ca, token=token(address, "--service", "other"))
        assert seen(greeter, "g") == {"routes": ["greeter", "shared"], "clusters": ["billing", "ledger"],
                                      "endpoints": ["billing", "ledger"], "authorization_policies": ["greeter-in"]}
        assert seen(audit, "a") == {"routes": ["shared"], "clusters": ["ledger"], "endpoints": ["ledger"],
                                    "authorization_policies": ["audit-in"]}
        assert seen(other, "o") == {"routes": [], "clusters": [], "endpoints": [], "authorization_policies": []}
        assert seen(credentials(address), "admin") == {"routes": ["default", "greeter", "shared"],
                                                       "clusters": ["billing", "greeter", "ledger"],
                                                       "endpoints": ["billing", "greeter", "ledger"],
                                                       "authorization_policies": ["audit-in", "greeter-in"]}


# ---------------------------------------------------------------- joining and renewal

def test_a_proxy_joins_with_its_token_renews_and_a_revoked_token_cannot_renew(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        config = mesh_config({"echo": [backend]}, [route("/", "echo")], route_name="greeter")
        mesh.start_control_plane(config, extra=("--cert-lifetime", "4s"))
        join = token(mesh.cp_address, "--service", "greeter")
        token_file = tmp_path / "join.token"
        token_file.write_text(join + "\n")
        proxy = mesh.start_proxy("greeter-1", "--service", "greeter", "--route-config", "greeter",
                                 "--token-file", str(token_file), "--ca-file", str(tmp_path / "data" / "ca.pem"))
        mesh.wait_synced("greeter-1")
        cp = mesh.control_plane
        cp.wait_for_line(r"issued a certificate for spiffe://mesh\.local/service/greeter to workload greeter "
                         r"\(join token", 5)
        # Renewed with the certificate itself, at half-life (2 s), at least twice.
        poll_until(lambda: cp.output().count("to workload greeter (certificate)") >= 2, 15,
                   "two renewals with the certificate")
        with proxy.channel() as channel:
            from tests.support.mesh import interop_unary
            assert interop_unary(channel) == "a"
        token_id = join.split(".")[1]
        assert cli(mesh.cp_address, "token", "revoke", token_id).returncode == 0
        proxy.proc.wait_for_line(r"certificate renewal for greeter refused: UNAUTHENTICATED: the client "
                                 rf"certificate of spiffe://mesh\.local/service/greeter was issued on token "
                                 rf"{token_id}, which is revoked", 15)
        again = meshgrpc("proxy", "--node-id", "greeter-2", "--service", "greeter", "--token-file", str(token_file),
                         "--ca-file", str(tmp_path / "data" / "ca.pem"), "--control-plane", mesh.cp_address,
                         "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
        mesh.procs.append(again)
        assert again.popen.wait(20) == 1
        again.wait_for_line(rf"refused a certificate for greeter: UNAUTHENTICATED: token {token_id} was revoked", 5)


def test_a_proxy_redials_its_discovery_stream_with_its_renewed_certificate(tmp_path):
    """Certificates of 4 s renewed at 2 s: once the first has expired the control
    plane restarts, and the proxy's stream comes back on the mTLS port only if it
    presents the certificate current at that reconnect."""
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        config = mesh_config({"echo": [backend]}, [route("/", "echo")], route_name="greeter")
        lifetime = ("--cert-lifetime", "4s")
        address = mesh.start_control_plane(config, extra=lifetime)
        token_file = tmp_path / "join.token"
        token_file.write_text(token(address, "--service", "greeter") + "\n")
        mesh.start_proxy("greeter-1", "--service", "greeter", "--route-config", "greeter",
                         "--token-file", str(token_file), "--ca-file", str(tmp_path / "data" / "ca.pem"))
        mesh.wait_synced("greeter-1")
        # The second renewal comes 4 s after joining: the first certificate has expired.
        poll_until(lambda: mesh.control_plane.output().count("to workload greeter (certificate)") >= 2, 15,
                   "two renewals with the certificate")
        mesh.kill_control_plane()
        mesh.start_control_plane(config, listen=address, attempts=5, extra=lifetime)
        mesh.wait_synced("greeter-1", timeout=20)
