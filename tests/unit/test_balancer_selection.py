"""Which endpoints a cluster balances over: health verdicts, zone preference with
spill-over, panic mode; and that such changes swap the cluster's picker only."""

from __future__ import annotations

import random

from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from tests.support.specs import cluster_set_of
from meshgrpc.proxy.cluster import ClusterSet
from tests.unit.balancer_helpers import FakeClock


def build(policy: str = "ROUND_ROBIN", eps=(), zone: str = "", clock=None, previous=None, **fields) -> ClusterSet:
    c = json_format.ParseDict({"name": "api", "lb_policy": policy, **fields}, resources_pb2.Cluster())
    items = [{"address": e} if isinstance(e, str) else e for e in eps]
    s = json_format.ParseDict({"cluster": "api", "endpoints": items}, resources_pb2.EndpointSet())
    return cluster_set_of({"api": c}, {"api": s}, previous, rng=random.Random(0),
                            clock=clock or FakeClock(), local_zone=zone)


def picked(cs: ClusterSet, n: int = 200) -> set[str]:
    return {cs.get("api").pick().address for _ in range(n)}


ZONED = [{"address": "a1:1", "zone": "a"}, {"address": "a2:1", "zone": "a"},
         {"address": "b1:1", "zone": "b"}, {"address": "b2:1", "zone": "b"}]


def test_failed_health_check_takes_an_endpoint_out_and_back():
    cs = build(eps=["a:1", "b:1", "c:1"], health_check={"interval": "1s"})
    state = cs.get("api")
    assert cs.set_health("api", "b:1", False)
    assert picked(cs) == {"a:1", "c:1"} and cs.get("api") is state  # same cluster state, new picker
    assert not cs.set_health("api", "b:1", False)  # no change, nothing rebuilt
    assert cs.describe()["clusters"][0]["endpoints"][1]["health"] == "UNHEALTHY"
    assert cs.describe()["clusters"][0]["endpoints"][1]["health_check"] == "FAILING"
    assert cs.set_health("api", "b:1", True)
    assert picked(cs) == {"a:1", "b:1", "c:1"}
    assert not cs.set_health("api", "nope:1", False) and not cs.set_health("nope", "a:1", False)


def test_health_verdict_survives_a_config_rebuild():
    first = build(eps=["a:1", "b:1", "c:1"], health_check={"interval": "1s"})
    first.set_health("api", "c:1", False)
    second = build(eps=["a:1", "b:1", "c:1", "d:1"], health_check={"interval": "1s"}, previous=first)
    assert picked(second) == {"a:1", "b:1", "d:1"}


def test_local_zone_is_preferred():
    cs = build(eps=ZONED, zone="a")
    assert picked(cs) == {"a1:1", "a2:1"} and cs.get("api").local_only


def test_no_zone_or_unknown_zone_uses_everything():
    assert picked(build(eps=ZONED)) == {"a1:1", "a2:1", "b1:1", "b2:1"}
    assert picked(build(eps=ZONED, zone="c")) == {"a1:1", "a2:1", "b1:1", "b2:1"}


def test_local_zone_spills_over_when_too_few_of_it_are_healthy():
    eps = ZONED + [{"address": "a3:1", "zone": "a"}]
    cs = build(eps=eps, zone="a", health_check={"interval": "1s"})
    cs.set_health("api", "a1:1", False)  # 2 of 3 local: still >= 50%
    assert picked(cs) == {"a2:1", "a3:1"}
    cs.set_health("api", "a2:1", False)  # 1 of 3 local: spill over to all usable
    assert picked(cs) == {"a3:1", "b1:1", "b2:1"} and not cs.get("api").local_only
    cs.set_health("api", "a2:1", True)
    assert picked(cs) == {"a2:1", "a3:1"}


def test_panic_balances_over_all_when_fewer_than_half_are_usable():
    cs = build(eps=["a:1", "b:1", "c:1", "d:1"], health_check={"interval": "1s"})
    cs.set_health("api", "a:1", False)
    cs.set_health("api", "b:1", False)  # 2 of 4 usable: exactly half, no panic
    assert picked(cs) == {"c:1", "d:1"} and not cs.get("api").panic
    cs.set_health("api", "c:1", False)  # 1 of 4: panic
    assert picked(cs) == {"a:1", "b:1", "c:1", "d:1"} and cs.get("api").panic
    assert cs.describe()["clusters"][0]["panic"] is True


def test_panic_threshold_is_configurable_and_zero_disables_it():
    cs = build(eps=["a:1", "b:1", "c:1", "d:1"], health_check={"interval": "1s"}, panic_threshold_percent=80)
    cs.set_health("api", "a:1", False)  # 3 of 4 = 75% < 80%
    assert cs.get("api").panic
    off = build(eps=["a:1", "b:1"], health_check={"interval": "1s"}, panic_threshold_percent=0)
    off.set_health("api", "a:1", False)
    off.set_health("api", "b:1", False)
    assert off.get("api").pick() is None


def test_draining_endpoints_stay_out_even_in_panic():
    cs = build(eps=["a:1", {"address": "b:1", "health_status": "DRAINING"}, "c:1"],
               health_check={"interval": "1s"})
    cs.set_health("api", "a:1", False)
    cs.set_health("api", "c:1", False)
    assert cs.get("api").panic and picked(cs) == {"a:1", "c:1"}


def test_ring_hash_remaps_only_an_unhealthy_endpoints_keys():
    cs = build("RING_HASH", eps=["a:1", "b:1", "c:1", "d:1"], health_check={"interval": "1s"})
    keys = [f"k{i}".encode() for i in range(500)]
    before = [cs.get("api").pick(k).address for k in keys]
    cs.set_health("api", "b:1", False)
    after = [cs.get("api").pick(k).address for k in keys]
    assert all(x == y for x, y in zip(before, after) if x != "b:1") and "b:1" not in after
