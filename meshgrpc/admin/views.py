"""The proxy's admin pages: readiness, the config in effect, cluster state, metrics,
and what the proxy would do with a call (/explain).

Each page reads the proxy's state at request time; nothing here is on the call path.
"""

from __future__ import annotations

import json
from typing import Callable

from google.protobuf import json_format

from meshgrpc.admin.http import Handler, Query, Response, no_query
from meshgrpc.config import resources
from meshgrpc.config.specs import describe
from meshgrpc.proxy.explain import explain_call


EXPLAIN_USAGE = "usage: /explain?path=/pkg.Service/Method[&authority=HOST][&header=name:value]...\n"


def _json(data) -> Response:
    return 200, "application/json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


class AdminViews:
    """Renders admin pages from the proxy's parts (read-only)."""

    def __init__(self, holder, configurator, client, metrics, draining: Callable[[], bool],
                 in_flight: Callable[[], int], authority: str = "", authorization=None) -> None:
        """`authority`: the :authority /explain assumes when none is given (the
        proxy's listen address, what a client dialing it sends); `authorization`:
        the inbound side's InboundAuthorization, if any."""
        self._holder = holder
        self._authorization = authorization  # the inbound side's InboundAuthorization, if any
        self._configurator = configurator
        self._client = client
        self._metrics = metrics
        self._draining = draining
        self._in_flight = in_flight
        self._authority = authority

    def routes(self) -> dict[str, Handler]:
        pages = {"/ready": self.ready, "/config_dump": self.config_dump, "/clusters": self.clusters,
                 "/metrics": self.metrics}
        return {**{path: no_query(page) for path, page in pages.items()}, "/explain": self.explain}

    def ready(self) -> Response:
        """200 only once a complete config is applied and while not draining."""
        if self._draining():
            return 503, "text/plain", b"draining\n"
        if not self._configurator.ready:
            missing = [t.rsplit(".", 1)[-1] for t in resources.TYPE_ORDER if t not in self._configurator.versions]
            why = f"waiting for {', '.join(missing)}" if missing else "route config not found"
            return 503, "text/plain", f"not ready: {why}\n".encode()
        return 200, "text/plain", b"ready\n"

    def config_dump(self) -> Response:
        """The config as received, and as in effect: the specs the proxy acts on,
        every default filled in."""
        mesh = self._configurator.mesh()
        state = self._holder.current
        return _json({
            "versions": dict(self._configurator.versions),
            "control_plane": {"target": self._client.target, "connected": self._client.connected,
                              "connects": self._client.connects, "last_error": self._client.last_error},
            "config": json_format.MessageToDict(mesh, preserving_proto_field_name=True),
            "effective": {
                "clusters": {c.name: describe(c.spec) for c in state.clusters},
                "route_config": describe(state.routes.spec) if state.routes is not None else None,
                "inbound_authorization": self._authorization.describe() if self._authorization else None,
            },
        })

    def clusters(self) -> Response:
        data = self._holder.current.clusters.describe()
        data["in_flight"] = self._in_flight()
        return _json(data)

    def explain(self, query: Query) -> Response:
        """GET /explain?path=/pkg.Service/Method[&authority=A][&header=name:value]...:
        the route, split and pick the proxy would make for that call now (explain.py)."""
        path = query.get("path", [""])[0]
        if not path.startswith("/"):
            return 400, "text/plain", (EXPLAIN_USAGE + "path must start with '/'\n").encode()
        headers = []
        for item in query.get("header", []):
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                return 400, "text/plain", f"{EXPLAIN_USAGE}header {item!r} is not name:value\n".encode()
            headers.append((name.strip().lower().encode(), value.strip().encode()))
        authority = query.get("authority", [""])[0] or self._authority
        return _json(explain_call(self._holder.current, path.encode(), authority.encode(), headers))

    def metrics(self) -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self._metrics.render()
