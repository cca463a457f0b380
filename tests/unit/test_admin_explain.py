"""The proxy's GET /explain: parameters parsed at the edge, bad ones refused
with 400 and the usage, the answer from the proxy's state in effect."""

from __future__ import annotations

import json
import random

from google.protobuf import json_format

from meshapi.v1 import resources_pb2
from meshgrpc.admin.views import AdminViews
from meshgrpc.proxy.state import ProxyState, StateHolder
from tests.support.clock import FakeClock
from tests.support.specs import cluster_set_of, route_table_of

ROUTES = {"name": "default", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
    {"name": "canary", "match": {"prefix": "/", "headers": [{"name": "x-canary", "exact": "true"}]},
     "route": {"cluster": "c"}},
    {"name": "default", "match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]}


def explain_page():
    routes = route_table_of(json_format.ParseDict(ROUTES, resources_pb2.RouteConfig()), rng=random.Random(0))
    clusters = cluster_set_of({"c": json_format.ParseDict({"name": "c"}, resources_pb2.Cluster())},
                              {"c": json_format.ParseDict({"cluster": "c", "endpoints": [{"address": "a:1"}]},
                                                          resources_pb2.EndpointSet())},
                              rng=random.Random(0), clock=FakeClock())
    views = AdminViews(StateHolder(ProxyState(routes, clusters, {})), None, None, None, draining=lambda: False,
                       in_flight=lambda: 0, authority="127.0.0.1:15001")
    return views.routes()["/explain"]


def test_explain_answers_from_the_state_in_effect():
    status, kind, body = explain_page()({"path": ["/svc/M"], "header": ["X-Canary: true"]})
    data = json.loads(body)
    assert (status, kind) == (200, "application/json")
    assert data["call"] == {"path": "/svc/M", "authority": "127.0.0.1:15001", "headers": [["x-canary", "true"]]}
    assert data["routing"]["route"] == "canary" and data["outcome"] == "route canary -> cluster c -> endpoint a:1"


def test_bad_parameters_are_refused_with_the_usage():
    page = explain_page()
    for query, why in (({}, "path must start with '/'"), ({"path": ["svc"]}, "path must start with '/'"),
                       ({"path": ["/s/m"], "header": ["no-colon"]}, "header 'no-colon' is not name:value")):
        status, _, body = page(query)
        assert status == 400 and body.decode().startswith("usage: /explain?path=") and why in body.decode()
