"""The proxy's admin pages: readiness, the config in effect, cluster state, metrics.

Each page reads the proxy's state at request time; nothing here is on the call path.
"""

from __future__ import annotations

import json
from typing import Callable

from google.protobuf import json_format

from meshgrpc.admin.http import Response
from meshgrpc.config import resources
from meshgrpc.config.specs import describe


def _json(data) -> Response:
    return 200, "application/json", (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


class AdminViews:
    """Renders admin pages from the proxy's parts (read-only)."""

    def __init__(self, holder, configurator, client, metrics, draining: Callable[[], bool],
                 in_flight: Callable[[], int], authorization=None) -> None:
        self._holder = holder
        self._authorization = authorization  # the inbound side's InboundAuthorization, if any
        self._configurator = configurator
        self._client = client
        self._metrics = metrics
        self._draining = draining
        self._in_flight = in_flight

    def routes(self) -> dict[str, Callable[[], Response]]:
        return {"/ready": self.ready, "/config_dump": self.config_dump, "/clusters": self.clusters,
                "/metrics": self.metrics}

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

    def metrics(self) -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self._metrics.render()
