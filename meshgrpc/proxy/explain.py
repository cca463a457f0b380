"""`meshgrpc explain` on the proxy's side: what the proxy would do with a call
now, and why, from the same routing table, weighted split and pickers the call
path uses (RouteTable.explain, RouteEntry.explain_split, ClusterState.explain).

Nothing is sent. The split and randomized pickers draw once each, from the
proxy's own random source, as a call would; cursors and schedules do not move.
The hash key for RING_HASH is read from the request headers given (a header the
route itself adds is not applied first).
"""

from __future__ import annotations

from meshgrpc.proxy.state import ProxyState

Headers = list[tuple[bytes, bytes]]


def explain_call(state: ProxyState, path: bytes, authority: bytes, headers: Headers) -> dict:
    """The explanation of a call to `path` with `authority` and `headers` (lower-case names). JSON-ready."""
    out: dict = {"call": {"path": _text(path), "authority": _text(authority),
                          "headers": [[_text(n), _text(v)] for n, v in headers]},
                 "versions": dict(state.versions)}
    if state.routes is None:
        out["outcome"] = "UNAVAILABLE: the proxy has no route configuration yet"
        return out
    out["routing"] = state.routes.explain(authority, path, headers)
    entry = state.routes.route(authority, path, headers)
    if entry is None:
        out["outcome"] = f"UNIMPLEMENTED: no route for {_text(path)}"
        return out
    out["split"] = entry.explain_split()
    key = _value(headers, entry.hash_header) if entry.hash_header is not None else None
    out["clusters"] = [_cluster(state, name, key) for name in dict.fromkeys(c["cluster"] for c in out["split"]["clusters"])]
    chosen = next(c for c in out["clusters"] if c["cluster"] == out["split"]["chosen"])
    out["outcome"] = (f"route {entry.name} -> cluster {chosen['cluster']} -> endpoint {chosen['chosen']}"
                      if chosen.get("chosen") else f"UNAVAILABLE: {chosen['why']}")
    return out


def _cluster(state: ProxyState, name: str, key: bytes | None) -> dict:
    cluster = state.clusters.get(name)
    if cluster is None:
        return {"cluster": name, "chosen": None, "why": f"cluster {name} is not configured", "endpoints": []}
    return cluster.explain(key)


def _value(headers: Headers, name: bytes) -> bytes | None:
    return next((v for n, v in headers if n == name), None)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
