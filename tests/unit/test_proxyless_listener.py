"""Listeners (the targets proxyless clients dial): validation with field paths,
their spec, `meshgrpc bootstrap` and how status shows proxyless clients."""

from __future__ import annotations

import json

from meshapi.v1 import management_pb2
from meshgrpc.config import loader, validate
from meshgrpc.config.specs import ListenerSpec, listener_spec
from meshgrpc.controlplane import state as mesh_state
from meshgrpc.controlplane.commands import status_table
from meshgrpc.errors import FailedPrecondition
from meshgrpc.proxyless import status as proxyless_status
from meshgrpc.proxyless.bootstrap import bootstrap
from meshgrpc.proxyless.envoy_types import CDS, LDS

import pytest

BASE = {"clusters": [{"name": "greeter"}],
        "routes": [{"name": "default", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "greeter"}}]}]}]}


def errors(*listeners: dict) -> list[str]:
    return [str(e) for e in validate.validate_mesh(loader.parse_document({**BASE, "listeners": list(listeners)}))]


def test_listener_name_is_required_and_unique():
    assert errors({"route_config": "default"}) == ["listeners[0].name: name is required"]
    assert errors({"name": "a.mesh", "route_config": "default"}, {"name": "a.mesh", "route_config": "default"}) == [
        'listeners[1].name: duplicate listener name "a.mesh" (also at listeners[0].name)']
    assert errors({"name": "bad name", "route_config": "default"}) == [
        'listeners[0].name: name "bad name" has characters outside [A-Za-z0-9._-]']


def test_listener_route_config_must_name_an_existing_route_config():
    assert errors({"name": "a.mesh", "route_config": "nope"}) == [
        'listeners[0].route_config: route config "nope" does not exist']
    assert errors({"name": "a.mesh"}) == [
        "listeners[0].route_config: route_config is required: the route config whose routes this target follows"]
    assert errors({"name": "a.mesh", "route_config": "default"}) == []


def test_listener_spec_carries_name_and_route_config():
    mesh = loader.parse_document({**BASE, "listeners": [{"name": "a.mesh", "route_config": "default"}]})
    assert listener_spec(mesh.listeners[0]) == ListenerSpec("a.mesh", "default")


def test_route_config_used_by_a_listener_cannot_be_deleted():
    mesh = loader.parse_document({**BASE, "listeners": [{"name": "a.mesh", "route_config": "default"}]})
    state = mesh_state.plan_apply(mesh_state.MeshState.empty(), mesh, replace=True).state
    with pytest.raises(FailedPrecondition, match="route config 'default' is used by listener"):
        mesh_state.plan_delete(state, "type.googleapis.com/meshapi.v1.RouteConfig", "default")
    after = mesh_state.plan_delete(state, "type.googleapis.com/meshapi.v1.Listener", "a.mesh").state
    assert after.configured["type.googleapis.com/meshapi.v1.Listener"] == {}


def test_bootstrap_names_the_control_plane_and_the_node():
    doc = bootstrap("app-1", "127.0.0.1:15010", zone="z")
    assert doc == {"xds_servers": [{"server_uri": "127.0.0.1:15010", "channel_creds": [{"type": "insecure"}],
                                    "server_features": ["xds_v3"]}],
                   "node": {"id": "app-1", "locality": {"zone": "z"}}}
    assert "locality" not in bootstrap("app-1", "h:1")["node"]
    json.dumps(doc)


def test_status_shows_proxyless_clients_in_their_own_columns_with_their_gaps():
    synced = management_pb2.TypeStatus(state=management_pb2.TypeStatus.SYNCED, sent_version="1")
    node = management_pb2.ProxyStatus(
        node_id="app-1", client="gRPC Python 1.85.3", peer="ipv4:127.0.0.1:1",
        types=[management_pb2.TypeStatus(type_url=t, state=synced.state, sent_version="1") for t in (LDS, CDS)],
        unsupported=["cluster greeter: lb_policy: PEAK_EWMA is served as round_robin"])
    assert proxyless_status.is_proxyless(node)
    table = status_table([node], proxyless_status.COLUMNS, with_client=True)
    header, row = table.splitlines()
    assert header.split() == ["NODE", "CLIENT", "PEER", "CONNECTED", "LDS", "RDS", "CDS", "EDS"]
    assert "gRPC Python 1.85.3" in row and row.count("SYNCED 1") == 2 and row.count("NOT_SENT") == 2
    assert proxyless_status.unsupported_text([node]) == (
        "app-1: not available to this proxyless client:\n"
        "  cluster greeter: lb_policy: PEAK_EWMA is served as round_robin\n")
