"""examples/grafana-dashboard.json asks only for series the proxy and the
control plane expose, by the labels they carry: a renamed metric or label
breaks this test, not the users' dashboards."""

from __future__ import annotations

import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families

from meshgrpc.admin.metrics import _EVENTS, ProxyMetrics, ScrapeGauges
from meshgrpc.controlplane.metrics import ControlPlaneMetrics
from meshgrpc.proxy.access_log import AccessLog
from tests.support.procs import REPO

DASHBOARD = os.path.join(REPO, "examples", "grafana-dashboard.json")
SELECTOR = re.compile(r"(meshgrpc_\w+)(\{[^}]*\})?")
BY = re.compile(r"by \(([^)]*)\)")


class _Session:
    class variant:
        name = "delta"
        from meshgrpc.xds.protocol import MESH as protocol

    def in_sync(self) -> bool:
        return True


class _Server:
    def sessions(self):
        return [_Session()]


def exposed() -> dict[str, set[str]]:
    """Every series name (with _bucket, _sum, _count, _total) and its labels, from both renderers."""
    proxy = ProxyMetrics(lambda: ScrapeGauges({"c": 1}, {"type.googleapis.com/meshapi.v1.Cluster": "1"}))
    proxy.on_call_end("r", "c", "a:1", 0, 200, 0.001)
    for event in _EVENTS:
        proxy.on_event(event, "c", "x")
    proxy.on_nack()
    proxy.watch_access_log(AccessLog("/dev/null"))
    cp = ControlPlaneMetrics([_Server()], lambda: 1, lambda: 1, http2_limits=lambda: {"too_many_pings": 1})
    session = _Session()
    cp.sent(None, session, "type.googleapis.com/meshapi.v1.Cluster", 100)
    cp.answered(None, session, "type.googleapis.com/meshapi.v1.Cluster", "nack")
    cp.on_commit("register", 0.001)
    series: dict[str, set[str]] = {}
    for text in (proxy.render().decode(), cp.render().decode()):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_every_query_names_an_exposed_series_and_its_labels():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    series = exposed()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    named = set()
    for expr in exprs:
        for name, selector in SELECTOR.findall(expr):
            assert name in series, f"{name} (in {expr!r}) is not exposed; exposed: {sorted(series)}"
            named.add(name)
            labels = set(re.findall(r"(\w+)\s*[!=]~?", selector or "")) - {"job"}
            assert labels <= series[name], f"{expr!r}: {labels - series[name]} not labels of {name}"
            for group in BY.findall(expr):
                wanted = {g.strip() for g in group.split(",")} - {"le"}
                assert wanted <= series[name], f"{expr!r}: by {wanted - series[name]} not labels of {name}"
    # Both halves are on it: the proxies' calls and the control plane's convergence.
    assert {"meshgrpc_proxy_calls_total", "meshgrpc_cp_convergence_seconds_bucket"} <= named
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
