"""The dashboard's data (GET /api/v1/mesh): the mesh as served joined with the
proxies' load reports and their sync state, as plain JSON-ready data.

Pure: it reads the served snapshot, the LoadBook and the discovery servers'
statuses it is given, and builds new dicts. The JSON is documented for scripts
in the README ("Seeing the mesh"); its shape:

- `routes`: one per route of every route config: its match, and the clusters it
  splits to (weight, share of the weights, calls/s the proxies sent that way);
- `clusters`: per cluster its policy, calls/s, and per endpoint the share of the
  cluster's calls, calls/s, failures/s, p50/p99, the balancer's rtt estimate,
  in flight, pending, health and ejection (figures from the proxies reporting
  now; null where none reported it); plus `series`, the last 5 minutes;
- `proxies`: per node (sidecars and proxyless clients) its zone, client, the
  state per resource type (SYNCED, STALE, NACKED with the reason, NOT_SENT) and
  whether it reports load.

Several proxies reporting the same endpoint: calls and in-flight counts add up;
p50 is the mean of theirs weighted by calls, p99 the highest, the rtt estimate
their mean; the endpoint is UNHEALTHY or ejected if any proxy says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshapi.v1 import management_pb2
from meshgrpc.config import resources
from meshgrpc.config.specs import cluster_spec, endpoint_specs, route_config_spec
from meshgrpc.controlplane.load_book import EndpointFigures, LoadBook

SyncState = management_pb2.TypeStatus.SyncState


class _Sum:
    """The figures of one endpoint summed over the proxies reporting it now."""

    __slots__ = ("calls_per_s", "failures_per_s", "by_status", "in_flight", "pending", "p50_weighted", "p50_calls",
                 "p99", "rtts", "unhealthy", "ejected_by", "balanced_by", "proxies")

    def __init__(self) -> None:
        self.calls_per_s = self.failures_per_s = self.p50_weighted = self.p50_calls = 0.0
        self.by_status: dict[str, float] = {}
        self.in_flight = self.pending = self.ejected_by = self.balanced_by = self.proxies = 0
        self.p99: float | None = None
        self.rtts: list[float] = []
        self.unhealthy = ""

    def add(self, e: EndpointFigures, window_s: float) -> None:
        per_s = 1.0 / window_s if window_s > 0 else 0.0
        self.calls_per_s += e.calls * per_s
        self.failures_per_s += e.failures * per_s
        for status, n in e.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0.0) + n * per_s
        self.in_flight += e.in_flight
        self.pending += e.pending
        if e.p50_s is not None:
            self.p50_weighted += e.p50_s * e.calls
            self.p50_calls += e.calls
            self.p99 = e.p99_s if self.p99 is None else max(self.p99, e.p99_s)
        self.rtts.append(e.rtt_s)
        if e.health != "HEALTHY":
            self.unhealthy = e.health
        self.ejected_by += e.ejected
        self.balanced_by += e.balanced_over
        self.proxies += 1

    def view(self, cluster_calls_per_s: float) -> dict:
        return {
            "calls_per_s": self.calls_per_s,
            "share": self.calls_per_s / cluster_calls_per_s if cluster_calls_per_s > 0 else 0.0,
            "failures_per_s": self.failures_per_s,
            "calls_by_status_per_s": self.by_status,
            "p50_s": self.p50_weighted / self.p50_calls if self.p50_calls else None,
            "p99_s": self.p99,
            "rtt_estimate_s": sum(self.rtts) / len(self.rtts),
            "in_flight": self.in_flight,
            "pending": self.pending,
            "ejected_by": self.ejected_by,
            "balanced_by": self.balanced_by,
            "reported_by": self.proxies,
        }


def mesh_view(snapshot, book: LoadBook, statuses: Iterable[management_pb2.ProxyStatus],
              versions: Mapping[str, str]) -> dict:
    """The whole dashboard model at the book's now."""
    sums, route_rates = _sum_reports(book)
    now = book.now()
    return {
        "generated_at": now,
        "report_interval_s": book.interval,
        "versions": {resources.SHORT_NAME.get(t, t): v for t, v in sorted(versions.items())},
        "routes": _routes(snapshot, route_rates),
        "clusters": _clusters(snapshot, sums, book, now),
        "proxies": _proxies(statuses, book),
    }


def _sum_reports(book: LoadBook) -> tuple[dict[tuple[str, str], _Sum], dict[tuple[str, str], float]]:
    sums: dict[tuple[str, str], _Sum] = {}
    routes: dict[tuple[str, str], float] = {}
    for _, report in book.current():
        for e in report.endpoints:
            sums.setdefault((e.cluster, e.address), _Sum()).add(e, report.window_s)
        for route, cluster, calls in report.routes:
            routes[route, cluster] = routes.get((route, cluster), 0.0) + calls / report.window_s
    return sums, routes


def _routes(snapshot, rates: Mapping[tuple[str, str], float]) -> list[dict]:
    out = []
    if snapshot is None:
        return out
    for message in snapshot.resources(resources.ROUTES).values():
        spec = route_config_spec(message)
        for vh in spec.virtual_hosts:
            for route in vh.routes:
                out.append(_route(spec.name, vh.name, route, rates))
    return out


def _route(config: str, vhost: str, route, rates: Mapping[tuple[str, str], float]) -> dict:
    action = route.action
    weights = list(action.weighted_clusters) or [(action.cluster, 1)]
    total = sum(w for _, w in weights) or 1
    splits = [{"cluster": c, "weight": w, "weight_share": w / total, "calls_per_s": rates.get((route.name, c), 0.0)}
              for c, w in weights]
    return {"route_config": config, "virtual_host": vhost, "name": route.name, "match": _match_text(route.match),
            "splits": splits, "calls_per_s": sum(s["calls_per_s"] for s in splits)}


def _match_text(match) -> str:
    text = f"{match.kind} {match.value}"
    for h in match.headers:
        value = "present" if h.kind == "present" else f"{h.kind} {h.value!r}"
        text += f", header {h.name} {'not ' if h.invert else ''}{value}"
    return text


def _clusters(snapshot, sums: Mapping[tuple[str, str], _Sum], book: LoadBook, now: float) -> list[dict]:
    configured = _configured(snapshot)
    names = sorted(set(configured) | {c for c, _ in sums})
    out = []
    for name in names:
        policy, endpoints = configured.get(name, ("", {}))
        addresses = list(endpoints) + sorted(a for c, a in sums if c == name and a not in endpoints)
        calls = sum(sums[name, a].calls_per_s for a in addresses if (name, a) in sums)
        out.append({
            "name": name, "lb_policy": policy, "calls_per_s": calls,
            "endpoints": [_endpoint(a, endpoints.get(a), sums.get((name, a)), calls) for a in addresses],
            "series": book.series.points(name, now),
        })
    return out


def _configured(snapshot) -> dict[str, tuple[str, dict[str, dict]]]:
    """cluster -> (lb_policy, address -> {weight, zone, health}) as served."""
    if snapshot is None:
        return {}
    sets = snapshot.resources(resources.ENDPOINTS)
    out = {}
    for name, message in snapshot.resources(resources.CLUSTER).items():
        spec = cluster_spec(message)
        endpoints = {e.address: {"weight": e.weight, "zone": e.zone, "configured_health": e.health}
                     for e in endpoint_specs(sets.get(name))}
        out[name] = (spec.lb_policy, endpoints)
    return out


def _endpoint(address: str, configured: dict | None, figures: _Sum | None, cluster_calls: float) -> dict:
    view = {"address": address, "configured": configured is not None, **(configured or {})}
    view["health"] = _health(configured, figures)
    view["reported"] = figures is not None
    if figures is not None:
        view.update(figures.view(cluster_calls))
    return view


def _health(configured: dict | None, figures: _Sum | None) -> str:
    if figures is not None and figures.ejected_by:
        return "EJECTED"
    if figures is not None and figures.unhealthy:
        return figures.unhealthy
    return configured.get("configured_health", "HEALTHY") if configured else "UNKNOWN"


def _proxies(statuses: Iterable[management_pb2.ProxyStatus], book: LoadBook) -> list[dict]:
    windows = {w.node_id: w for w in book.proxies()}
    now = book.now()
    out = []
    for status in sorted(statuses, key=lambda s: s.node_id):
        window = windows.get(status.node_id)
        latest = window.latest if window is not None else None
        types = [_type(t) for t in status.types]
        out.append({
            "node_id": status.node_id, "zone": status.zone, "client": status.client, "peer": status.peer,
            "connected_since": status.connected_since.ToNanoseconds() / 1e9,
            "state": _overall(types), "types": types, "unsupported": list(status.unsupported),
            "reports_load": window is not None,
            "last_report_age_s": now - latest.at if latest is not None else None,
        })
    return out


def _type(t: management_pb2.TypeStatus) -> dict:
    return {"type": t.type_url.rsplit(".", 1)[-1], "state": SyncState.Name(t.state), "sent_version": t.sent_version,
            "acked_version": t.acked_version, "error": t.error}


def _overall(types: list[dict]) -> str:
    states = {t["state"] for t in types}
    if "NACKED" in states:
        return "NACKED"
    if states <= {"SYNCED", "NOT_SENT"} and "SYNCED" in states:
        return "SYNCED"
    return "STALE"
