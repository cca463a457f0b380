"""Several control-plane replicas on one real 3-member etcd: applies reach proxies
on every replica with the same versions, conflicting applies abort, the etcd
leader and a replica can be SIGKILLed without losing applies, registrations or
proxies' config."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import tempfile
import threading
import time
import uuid

import grpc
import pytest

from meshapi.v1 import discovery_pb2, management_pb2, management_pb2_grpc, resources_pb2
from meshgrpc.config.loader import parse_text
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.controlplane.controller import Aborted, Controller
from meshgrpc.controlplane.etcd_client import EtcdClient
from meshgrpc.controlplane.etcd_store import EtcdStore
from meshgrpc.xds.client import DiscoveryClient
from meshgrpc.xds.delta_client import DeltaClient
from tests.conftest import Backing
from tests.integration.cp_support import EXAMPLE, DiscoveryProbe, cli, start_control_plane, versions_of
from tests.integration.test_cp_registration import served_addresses
from tests.support.mesh import Load, Mesh, interop_unary, mesh_config, route
from tests.support.procs import credentials, dialer, meshgrpc, poll_until


@pytest.fixture
def shared(etcd_cluster) -> Backing:
    """One etcd prefix for the replicas of one test."""
    prefix = f"/replicas-{uuid.uuid4().hex[:12]}"
    return Backing("etcd", ("--store", etcd_cluster.url(), "--etcd-prefix", prefix), etcd_cluster)


def replicas(backing: Backing, count: int, *extra: str):
    started = [start_control_plane(backing, *extra) for _ in range(count)]
    return [p for p, _ in started], [a for _, a in started]


def test_an_apply_on_one_replica_reaches_a_proxy_on_another_within_a_second_with_one_version(shared, tmp_path):
    procs, (a, b, c) = replicas(shared, 3, "--config", EXAMPLE)
    try:
        with DiscoveryProbe(c, "on-c") as probe:
            poll_until(lambda: all(probe.responses(t) for t in TYPE_ORDER), 10, "the probe on C is synced")
            extra = tmp_path / "extra.yaml"
            extra.write_text("clusters: [{name: payments}]\n")
            applied = cli(a, "apply", "-f", str(extra))
            assert applied.returncode == 0, applied.stderr
            # Within 1 s of the apply returning (the poll starts when the CLI has exited).
            poll_until(lambda: "payments" in {x.name for x in probe.latest(CLUSTER)}, 1.0,
                       "the apply on A reached the proxy on C", interval=0.01)
            served = {r.version_info for r in probe.responses(CLUSTER)[-1:]}
        versions = [versions_of(cli(x, "get", "all").stdout) for x in (a, b, c)]
        assert versions[0] == versions[1] == versions[2]
        assert served == {versions[0]["clusters"]}
    finally:
        for p in procs:
            p.kill()


async def _in_process_replicas(cluster, prefix: str, count: int = 2):
    stores = [EtcdStore(EtcdClient(cluster.endpoints.split(",")), prefix) for _ in range(count)]
    controllers = []
    for store in stores:
        controller = Controller(store, store.initial_state(await store.load()))
        store.follow(controller.adopt)
        controllers.append(controller)
    return stores, controllers


async def _until(predicate, what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _lb(controller: Controller, cluster: str) -> int:
    return controller.state.configured[CLUSTER][cluster].lb_policy


def test_two_replicas_applying_conflicting_changes_at_once_one_wins_and_the_other_is_aborted(etcd_cluster):
    async def main():
        stores, (a, b) = await _in_process_replicas(etcd_cluster, f"/conflict-{uuid.uuid4().hex[:8]}")
        try:
            await a.apply(parse_text("clusters: [{name: web}]"), replace=False)
            await _until(lambda: "web" in b.state.configured[CLUSTER], "B sees web")
            # Both plan on the same state, then commit: one compare-and-swap fails.
            results = await asyncio.gather(
                a.apply(parse_text("clusters: [{name: web, lb_policy: RANDOM}]"), replace=False),
                b.apply(parse_text("clusters: [{name: web, lb_policy: LEAST_REQUEST}]"), replace=False),
                return_exceptions=True)
            aborted = [r for r in results if isinstance(r, Aborted)]
            won = [i for i, r in enumerate(results) if isinstance(r, list)]
            assert len(aborted) == 1 and len(won) == 1, results
            assert aborted[0].code == grpc.StatusCode.ABORTED and "nothing of this change" in str(aborted[0])
            winner = resources_pb2.Cluster.LbPolicy.Value(("RANDOM", "LEAST_REQUEST")[won[0]])
            await _until(lambda: _lb(a, "web") == _lb(b, "web") == winner, "both replicas hold the winner's change")
            # Changes to different resources commute: both are rebased and land.
            results = await asyncio.gather(a.apply(parse_text("clusters: [{name: x}]"), replace=False),
                                           b.apply(parse_text("clusters: [{name: y}]"), replace=False))
            assert all(len(r) == 1 for r in results)
            await _until(lambda: {"x", "y"} <= set(a.state.configured[CLUSTER]) and
                         {"x", "y"} <= set(b.state.configured[CLUSTER]), "both replicas hold x and y")
            assert a.state.versions == b.state.versions
        finally:
            for store in stores:
                await store.close()
    asyncio.run(asyncio.wait_for(main(), 30))


class Applier:
    """Applies one new cluster every `interval` seconds through the management API
    and records what each apply answered."""

    def __init__(self, target: str, interval: float = 0.1) -> None:
        self.target, self.interval = target, interval
        self.succeeded: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Applier:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with credentials(self.target).channel(self.target) as channel:
            stub = management_pb2_grpc.ManagementStub(channel)
            i = 0
            while not self._stop.is_set():
                name = f"c{i:03d}"
                try:
                    stub.Apply(management_pb2.ApplyRequest(config=parse_text(f"clusters: [{{name: {name}}}]")),
                               timeout=15)
                    self.succeeded.append(name)
                except grpc.RpcError as e:
                    self.failed.append((name, f"{e.code().name}: {e.details()}"))
                i += 1
                self._stop.wait(self.interval)


def test_the_etcd_leader_sigkilled_while_applies_run_loses_no_successful_apply(shared, tmp_path):
    cluster = shared.cluster
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        config = mesh.write_config(mesh_config({"svc": [backend]}, [route("/", "svc")]))
        procs, addresses = replicas(shared, 2, "--config", config)
        try:
            mesh.cp_address = ",".join(addresses)
            proxy = mesh.start_proxy("p1")
            with Load(proxy.address, interop_unary, threads=2) as load, Applier(addresses[0]) as applier:
                poll_until(lambda: len(applier.succeeded) >= 5, 10, "applies are running")
                leader = cluster.leader()
                leader.kill()
                killed_at = len(applier.succeeded)
                poll_until(lambda: len(applier.succeeded) >= killed_at + 10, 20, "applies go on after the leader died")
                load.wait_calls(50, after=time.monotonic())
            assert load.failures == []                     # proxies kept serving throughout
            assert all("etcd" in why or "ABORTED" in why or "UNAVAILABLE" in why for _, why in applier.failed), \
                applier.failed
            served = set()
            for address in addresses:
                result = cli(address, "get", "clusters", "-o", "json")
                assert result.returncode == 0, result.stderr
                served.add(frozenset(c["name"] for c in json.loads(result.stdout)["clusters"]))
            assert len(served) == 1                          # both replicas serve the same mesh
            missing = set(applier.succeeded) - next(iter(served))
            assert not missing, f"applies that returned success are gone: {sorted(missing)}"
        finally:
            for p in procs:
                p.kill()
            for m in cluster.members:
                if not m.running:
                    cluster.restart(m)


class WireSotw(DiscoveryClient):
    """A state-of-the-world client that records each response's (type, resources) as received."""

    wire: list

    def _answer(self, response):
        self.wire.append((response.type_url, len(response.resources)))
        return super()._answer(response)


class WireDelta(DeltaClient):
    """A delta client that records each response's (type, resources + removals) as received."""

    wire: list

    def _handle(self, response):
        self.wire.append((response.type_url, len(response.resources) + len(response.removed_resources)))
        return super()._handle(response)


def _carrying(wire) -> list[tuple[str, int]]:
    """The responses that carried something."""
    return [(t, n) for t, n in wire if n]


@pytest.mark.parametrize("client_class", [WireDelta, WireSotw], ids=["delta", "sotw"])
def test_a_replica_sigkilled_its_proxy_resumes_on_another_without_a_resend_and_keeps_registrations(
        shared, client_class):
    procs, (a, b) = replicas(shared, 2, "--config", EXAMPLE, "--lease-ttl", "3")
    holder = None
    try:
        holder = meshgrpc("--log-level", "INFO", "register", "--cluster", "greeter", "--address", "127.0.0.1:7100",
                          "--control-plane", f"{b},{a}")
        holder.wait_for_line(r"registered 127\.0\.0\.1:7100", 10)
        asyncio.run(asyncio.wait_for(_resume_after_kill(client_class, procs[1], a, b, holder), 60))
    finally:
        if holder is not None:
            holder.kill()
        for p in procs:
            p.kill()


class Recorder:
    """A proxy's view through on_update: the endpoints it holds."""

    def __init__(self) -> None:
        self.addresses: set[str] = set()

    def __call__(self, type_url: str, version: str, items) -> None:
        if type_url == ENDPOINTS:
            self.addresses = {e.address for s in items for e in s.endpoints}


def _mover(client_class, targets: str, seed: int, like=None):
    """A discovery client; `like` is an earlier one whose subscriptions and versions
    it starts from (a proxy that restarts its stream, holding what it had)."""
    seen = Recorder()
    client = client_class(targets, discovery_pb2.Node(id="mover"),
                          {CLUSTER: [], ENDPOINTS: [], ROUTES: ["default"]}, seen, rng=random.Random(seed),
                          dialer=dialer(targets))
    client.wire = []
    if isinstance(like, DeltaClient):
        client.subs = like.subs
        client.versions = like.subs.versions
    elif like is not None:
        client.versions.update(like.versions)
    return client, seen


def _synced_on(address: str) -> bool:
    status = cli(address, "status").stdout
    return any(line.startswith("mover") and line.count("SYNCED") == 3 for line in status.splitlines())


async def _resume_after_kill(client_class, b_proc, a: str, b: str, holder) -> None:
    client, seen = _mover(client_class, f"{b},{a}", 3)
    client.start()
    try:
        await _until(lambda: "127.0.0.1:7100" in seen.addresses, "the proxy on B holds the registration", 10)
        before = len(client.wire)
        b_proc.signal(signal.SIGKILL)
        killed = time.monotonic()
        await _until(lambda: client.connected and client.target == a and client.connects == 2,
                     "the proxy reconnected to A", 5)
        assert time.monotonic() - killed < 5
        # A answers the resumed subscription (its status shows the stream SYNCED), resending nothing.
        await _until(lambda: _synced_on(a), "A shows the moved proxy synced", 10)
        assert _carrying(client.wire[before:]) == [], f"resent after the move: {client.wire[before:]}"
        # The registration moved with its stream, keeping its lease: served all along.
        holder.wait_for_line(r"lease resumed", 10)
        for _ in range(3):   # over two lease TTLs
            assert "127.0.0.1:7100" in served_addresses(a)
            await asyncio.sleep(2)
        assert _carrying(client.wire[before:]) == []
    finally:
        await client.stop()
    # A proxy that was away while only endpoints changed is sent the endpoints alone.
    result = _apply_text(a, "endpoints: [{cluster: greeter, endpoints: [{address: '127.0.0.1:50051'}]}]\n")
    assert result.returncode == 0, result.stderr
    again, _ = _mover(client_class, f"{b},{a}", 4, like=client)
    again.start()
    try:
        await _until(lambda: _carrying(again.wire), "the change made while it was away", 10)
        await _until(lambda: _synced_on(a), "synced on A", 10)
        assert [t for t, _ in _carrying(again.wire)] == [ENDPOINTS]
    finally:
        await again.stop()


def _apply_text(address: str, text: str):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    return cli(address, "apply", "-f", f.name)
