"""Mesh state plans: apply (merge, replace), delete, registrations, diffs; validation
of the whole result before anything is committed."""

from __future__ import annotations

import pytest

from meshapi.v1 import management_pb2
from meshgrpc.config.loader import parse_text
from meshgrpc.config.resources import CLUSTER, ENDPOINTS, ROUTES
from meshgrpc.controlplane.state import MeshState, plan_apply, plan_delete, plan_register, plan_unregister
from meshgrpc.errors import ConfigError, FailedPrecondition, NotFound

BASE = """
clusters:
  - {name: greeter, lb_policy: PEAK_EWMA}
  - {name: canary, lb_policy: ROUND_ROBIN}
  - {name: spare}
endpoints:
  - cluster: greeter
    endpoints: [{address: "127.0.0.1:50051", weight: 3}, {address: "127.0.0.1:50052"}]
routes:
  - name: default
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {weighted_clusters: [{name: greeter, weight: 9}, {name: canary, weight: 1}]}
"""
ADDED, MODIFIED, REMOVED = (management_pb2.ResourceChange.ADDED, management_pb2.ResourceChange.MODIFIED,
                            management_pb2.ResourceChange.REMOVED)


def mesh(text: str):
    return parse_text(text)


def base_state() -> MeshState:
    return plan_apply(MeshState.empty(), mesh(BASE), replace=True).state


def instance(address: str, cluster: str = "greeter", **kw) -> management_pb2.Instance:
    return management_pb2.Instance(cluster=cluster, address=address, **kw)


def summary(changes):
    return [(c.kind, c.name, c.action) for c in changes]


def test_first_apply_adds_every_resource_and_commits_them():
    plan = plan_apply(MeshState.empty(), mesh(BASE), replace=False)
    assert summary(plan.changes) == [
        (management_pb2.CLUSTER, "canary", ADDED), (management_pb2.CLUSTER, "greeter", ADDED),
        (management_pb2.CLUSTER, "spare", ADDED), (management_pb2.ENDPOINTS, "greeter", ADDED),
        (management_pb2.ROUTE, "default", ADDED)]
    assert set(plan.commit.resources) == {(CLUSTER, "canary"), (CLUSTER, "greeter"), (CLUSTER, "spare"),
                                          (ENDPOINTS, "greeter"), (ROUTES, "default")}


def test_merge_changes_only_named_resources_with_a_unified_yaml_diff():
    plan = plan_apply(base_state(), mesh("clusters: [{name: spare, lb_policy: RANDOM}]"), replace=False)
    assert summary(plan.changes) == [(management_pb2.CLUSTER, "spare", MODIFIED)]
    diff = plan.changes[0].diff
    assert "--- a/clusters/spare" in diff and "+++ b/clusters/spare" in diff
    assert "+lb_policy: RANDOM" in diff
    assert set(plan.state.configured[CLUSTER]) == {"greeter", "canary", "spare"}


def test_applying_the_same_config_again_changes_nothing():
    plan = plan_apply(base_state(), mesh(BASE), replace=False)
    assert plan.changes == [] and plan.commit.is_empty()


def test_replace_removes_resources_the_config_lacks():
    replaced = BASE.replace("  - {name: spare}\n", "")
    plan = plan_apply(base_state(), mesh(replaced), replace=True)
    assert summary(plan.changes) == [(management_pb2.CLUSTER, "spare", REMOVED)]
    assert plan.commit.resources == {(CLUSTER, "spare"): None}
    assert "-name: spare" in plan.changes[0].diff and "+++ /dev/null" in plan.changes[0].diff


def test_invalid_apply_reports_every_error_with_paths_into_the_request():
    state = base_state()
    bad = mesh("""
clusters: [{name: ok}, {name: ok}]
endpoints: [{cluster: ok, endpoints: [{address: "nohost"}]}]
routes:
  - name: default
    virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: missing}}]}]
""")
    with pytest.raises(ConfigError) as caught:
        plan_apply(state, bad, replace=False)
    paths = {e.path for e in caught.value.errors}
    assert "clusters[1].name" in paths
    assert any(p.startswith("endpoints[0].endpoints[0].address") for p in paths)
    assert any(p.startswith("routes[0].virtual_hosts[0].routes[0].route") for p in paths)
    assert state == base_state()  # plans never mutate the state they start from


def test_replace_that_drops_a_used_cluster_is_invalid():
    with pytest.raises(ConfigError, match="canary"):
        plan_apply(base_state(), mesh(BASE.replace("  - {name: canary, lb_policy: ROUND_ROBIN}\n", "")), replace=True)


def test_deleting_a_cluster_a_route_uses_is_refused_naming_the_route():
    with pytest.raises(FailedPrecondition, match="default"):
        plan_delete(base_state(), CLUSTER, "greeter")


def test_deleting_a_cluster_takes_its_endpoints_and_registrations_with_it():
    state = plan_apply(base_state(), mesh("endpoints: [{cluster: spare, endpoints: [{address: 'h:1'}]}]"),
                       replace=False).state
    state = plan_register(state, instance("h:2", "spare")).state
    plan = plan_delete(state, CLUSTER, "spare")
    assert summary(plan.changes) == [(management_pb2.CLUSTER, "spare", REMOVED),
                                     (management_pb2.ENDPOINTS, "spare", REMOVED)]
    assert plan.commit.registrations == {("spare", "h:2"): None}
    assert "spare" not in plan.state.registrations


def test_deleting_what_does_not_exist_is_not_found():
    with pytest.raises(NotFound):
        plan_delete(base_state(), ROUTES, "nope")


def test_registered_endpoints_join_the_served_set_and_win_over_configured_addresses():
    state = plan_register(base_state(), instance("127.0.0.1:50052", weight=7, zone="b")).state
    state = plan_register(state, instance("127.0.0.1:60000")).state
    served = {e.cluster: e for e in state.served().endpoints}["greeter"]
    assert [(e.address, e.weight.value if e.HasField("weight") else None) for e in served.endpoints] == [
        ("127.0.0.1:50051", 3), ("127.0.0.1:50052", 7), ("127.0.0.1:60000", None)]
    # The configured set itself is untouched.
    assert len(state.configured[ENDPOINTS]["greeter"].endpoints) == 2


def test_registration_creates_a_served_set_for_a_cluster_without_one():
    state = plan_register(base_state(), instance("10.0.0.1:80", "canary")).state
    assert [e.cluster for e in state.served().endpoints] == ["canary", "greeter"]


def test_registration_for_a_missing_cluster_fails_precondition():
    with pytest.raises(FailedPrecondition, match="nope"):
        plan_register(base_state(), instance("h:1", "nope"))


def test_registration_with_a_bad_address_is_invalid_with_an_instance_path():
    with pytest.raises(ConfigError) as caught:
        plan_register(base_state(), instance("no-port"))
    assert caught.value.errors[0].path.startswith("instance.address")


def test_unregister_removes_the_endpoint_and_is_a_no_op_when_absent():
    state = plan_register(base_state(), instance("h:9")).state
    plan = plan_unregister(state, "greeter", "h:9")
    assert plan.commit.registrations == {("greeter", "h:9"): None}
    assert plan.state.registrations == {}
    assert plan_unregister(plan.state, "greeter", "h:9") is None
