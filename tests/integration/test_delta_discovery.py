"""Incremental discovery over real gRPC (an in-process DiscoveryServer bound at
127.0.0.1:0): scoped proxies are sent only what they reach and only what changed,
routes are applied after the clusters they reach, a reconnect resends nothing,
and a state-of-the-world proxy on the same server still converges."""

from __future__ import annotations

import asyncio
import random

from meshapi.v1 import discovery_pb2, resources_pb2 as r
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES, TYPE_ORDER
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.client import DiscoveryClient
from meshgrpc.xds.delta_client import DeltaClient
from meshgrpc.xds.snapshot import Snapshot, route_refs
from tests.integration.test_discovery_stream import Plane, poll
from tests.unit.xds_builders import route_config


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


class Holder:
    """A proxy's config as on_update leaves it; checks make-before-break on every
    update: the routes it holds never name a cluster it lacks."""

    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, object]] = {t: {} for t in TYPE_ORDER}
        self.updates: list[tuple[str, int]] = []

    def __call__(self, type_url, version, items) -> None:
        candidate = {**self.by_type, type_url: {(i.cluster if type_url == ENDPOINTS else i.name): i for i in items}}
        reached = set().union(*(route_refs(x) for x in candidate[ROUTES].values()))
        missing = reached - set(candidate[CLUSTER])
        assert not missing, f"{type_url} update leaves routes naming missing clusters {missing}"
        self.by_type = candidate
        self.updates.append((type_url, len(items)))

    def addresses(self, cluster: str) -> set[str]:
        held = self.by_type[ENDPOINTS].get(cluster)
        return {e.address for e in held.endpoints} if held else set()


def big_mesh(clusters: int, scopes: int, extra: dict[str, list[str]] | None = None) -> r.MeshConfig:
    """`clusters` clusters of 2 endpoints; route config r<i> reaches 10 clusters of its own."""
    names = [f"c{i:04d}" for i in range(clusters)]
    endpoints = {n: [f"10.{i // 250}.{i % 250}.1:80", f"10.{i // 250}.{i % 250}.2:80"] for i, n in enumerate(names)}
    endpoints.update(extra or {})
    return r.MeshConfig(
        clusters=[r.Cluster(name=n) for n in names],
        endpoints=[r.EndpointSet(cluster=n, endpoints=[r.Endpoint(address=a) for a in addrs])
                   for n, addrs in endpoints.items()],
        routes=[route_config(f"r{s}", names[s * 10:(s + 1) * 10]) for s in range(scopes)])


def test_one_endpoint_added_to_one_of_1000_clusters_goes_only_to_the_proxies_scoped_to_it():
    async def main():
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(big_mesh(1000, 5), {t: "1" for t in TYPE_ORDER}))
        plane = await Plane(cache).start()
        proxies = []
        for i in range(20):   # four proxies on each of five route configs
            holder = Holder()
            client = DeltaClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id=f"p{i}"),
                                 {CLUSTER: [], ENDPOINTS: [], ROUTES: [f"r{i % 5}"]}, holder, rng=random.Random(i))
            client.start()
            proxies.append((client, holder))
        try:
            await poll(lambda: all(len(h.by_type[CLUSTER]) == 10 and h.by_type[ROUTES] for _, h in proxies),
                       "every proxy holds the 10 clusters its route reaches", 20)
            assert all(len(h.by_type[ENDPOINTS]) == 10 for _, h in proxies)
            sent = {t: plane.discovery.resources_sent(t) for t in TYPE_ORDER}
            assert sent[CLUSTER] == sent[ENDPOINTS] == 20 * 10 and sent[ROUTES] == 20

            # One endpoint more in c0003, reached by route config r0 only.
            added = "10.9.9.9:80"
            cache.set(Snapshot.from_mesh(big_mesh(1000, 5, {"c0003": ["10.0.3.1:80", "10.0.3.2:80", added]}),
                                         {t: "2" for t in TYPE_ORDER}))
            scoped = [h for i, (_, h) in enumerate(proxies) if i % 5 == 0]
            await poll(lambda: all(added in h.addresses("c0003") for h in scoped), "the scoped proxies got it", 10)
            await poll(lambda: all(s.types[1].state == s.types[1].SYNCED for s in plane.discovery.proxy_statuses()),
                       "every proxy synced on endpoints", 10)
            after = {t: plane.discovery.resources_sent(t) for t in TYPE_ORDER}
            assert after[ENDPOINTS] - sent[ENDPOINTS] == len(scoped) == 4      # one EndpointSet each
            assert after[CLUSTER] == sent[CLUSTER] and after[ROUTES] == sent[ROUTES]
            assert all(h.updates[-1] == (ENDPOINTS, 10) for h in scoped)
        finally:
            for client, _ in proxies:
                await client.stop()

        # An older proxy, state of the world, on the same server: every resource, converged.
        old = Holder()
        sotw = DiscoveryClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id="old"),
                               {CLUSTER: [], ENDPOINTS: [], ROUTES: ["r0"]}, old, rng=random.Random(99))
        sotw.start()
        try:
            await poll(lambda: sotw.versions == {t: "2" for t in (CLUSTER, ENDPOINTS, ROUTES)}, "the SotW proxy converged", 10)
            assert len(old.by_type[CLUSTER]) == 1000 and added in old.addresses("c0003")
        finally:
            await sotw.stop()
        await plane.stop()
    run(main())


def test_a_route_change_to_new_clusters_applies_them_before_the_route_and_drops_the_old_after():
    async def main():
        def mesh(used: list[str], exist: list[str]):
            return r.MeshConfig(clusters=[r.Cluster(name=c) for c in exist],
                                endpoints=[r.EndpointSet(cluster=c, endpoints=[r.Endpoint(address="10.0.0.1:80")])
                                           for c in exist],
                                routes=[route_config("default", used)])
        cache = SnapshotCache()
        cache.set(Snapshot.from_mesh(mesh(["a"], ["a", "b", "c"]), {t: "1" for t in TYPE_ORDER}))
        plane = await Plane(cache).start()
        holder = Holder()   # asserts make-before-break on every update
        client = DeltaClient(f"127.0.0.1:{plane.port}", discovery_pb2.Node(id="mover"),
                             {CLUSTER: [], ENDPOINTS: [], ROUTES: ["default"]}, holder, rng=random.Random(1))
        client.start()
        try:
            await poll(lambda: set(holder.by_type[CLUSTER]) == {"a"} and holder.by_type[ROUTES], "scoped to a")
            cache.set(Snapshot.from_mesh(mesh(["b", "c"], ["a", "b", "c"]), {t: "2" for t in TYPE_ORDER}))
            await poll(lambda: set(holder.by_type[CLUSTER]) == {"b", "c"}, "moved to b and c, a dropped")
            assert route_refs(holder.by_type[ROUTES]["default"]) == {"b", "c"}
            assert set(holder.by_type[ENDPOINTS]) == {"b", "c"}
            assert client.subs.wanted[CLUSTER] == {"b", "c"}

            # The stream breaks; the proxy resumes with what it holds: nothing is resent.
            count = len(holder.updates)
            # The server counts a response once its write returned, which can be after the
            # client applied it: a, then b and c, of each type; two route configs.
            expected = {CLUSTER: 3, ENDPOINTS: 3, ROUTES: 2}
            await poll(lambda: {t: plane.discovery.resources_sent(t) for t in expected} == expected,
                       "the server counted what it sent")
            sent = expected
            await plane.stop()
            await poll(lambda: not client.connected, "the client noticed")
            await plane.start(port=plane.port)
            await poll(lambda: client.connected and client.connects == 2, "reconnected")
            await poll(lambda: (s := plane.status("mover")) and all(t.state == t.SYNCED for t in s.types),
                       "synced after the reconnect")
            assert holder.updates[count:] == []
            assert {t: plane.discovery.resources_sent(t) for t in sent} == sent   # on the wire too
        finally:
            await client.stop()
            await plane.stop()
    run(main())
