"""Active health checks: grpc.health.v1 Check calls to every endpoint of every
cluster that has `health_check`, and the verdicts they lead to.

`HealthChecker` owns one task per (cluster, endpoint address), each with its own
connection (a meshgrpc.grpcwire channel: the proxy imports no grpcio). A task
checks every `interval` (plus up to `jitter_fraction` of it at random, so checks
of many endpoints do not synchronise), counts consecutive passes and failures,
and reports a change of verdict through the `on_change(cluster, address,
healthy)` callback once `unhealthy_threshold` failures or `healthy_threshold`
passes in a row say so. A check passes when Check answers SERVING within
`timeout`, connecting included; any other status, an RPC error or the deadline
is a failure. After a failed check the connection is dropped and dialled again
at the next one, so a dead endpoint costs one connection attempt per interval
and a restarted one is seen within about one interval.

An endpoint starts with the verdict its stats hold (EndpointStats.check_healthy:
healthy for a new endpoint, so a new cluster serves at once rather than waiting a
whole round of checks; Envoy instead holds new hosts back until their first check).

Lifecycle: `sync(cluster_set)` after every config swap starts tasks for new
endpoints, restarts those whose check config changed and stops those gone;
`await stop()` cancels every task and waits (bounded) for each to close its
connection. The callback runs on the event loop; in the proxy it is
`lambda c, a, h: holder.current.clusters.set_health(c, a, h)`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Callable

# The protobuf messages only: grpc_health.v1.health_pb2 imports no grpcio.
from grpc_health.v1 import health_pb2

from meshgrpc.config.specs import HealthCheckSpec
from meshgrpc.grpcwire import Channel, Dialer, RpcError
from meshgrpc.tasks import KeyedTasks

if TYPE_CHECKING:
    from meshgrpc.proxy.cluster import ClusterSet

log = logging.getLogger(__name__)

OnChange = Callable[[str, str, bool], None]
STOP_TIMEOUT = 5.0  # longest wait for the tasks to close their connections on stop()
CHECK = "/grpc.health.v1.Health/Check"


# One cluster's HealthCheck with the defaults of resources.proto filled in.
CheckSettings = HealthCheckSpec


class Verdict:
    """Consecutive pass/fail counting for one endpoint; pure."""

    __slots__ = ("healthy", "_passes", "_fails", "_settings")

    def __init__(self, healthy: bool, settings: CheckSettings) -> None:
        self.healthy = healthy
        self._passes = self._fails = 0
        self._settings = settings

    def record(self, passed: bool) -> bool:
        """Counts one check; True if the verdict changed."""
        if passed:
            self._passes, self._fails = self._passes + 1, 0
            if not self.healthy and self._passes >= self._settings.healthy_threshold:
                self.healthy = True
                return True
        else:
            self._passes, self._fails = 0, self._fails + 1
            if self.healthy and self._fails >= self._settings.unhealthy_threshold:
                self.healthy = False
                return True
        return False


class HealthChecker:
    """Owns the health-check tasks of one proxy. Use from the event loop only."""

    def __init__(self, on_change: OnChange, *, rng: random.Random | None = None,
                 dialer: Dialer | None = None) -> None:
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._dialer = dialer or Dialer()
        self._tasks = KeyedTasks("health-check", STOP_TIMEOUT)

    def sync(self, clusters: ClusterSet) -> None:
        """Makes the running checks match `clusters` (call after each swap)."""
        wanted: dict[tuple[str, str], CheckSettings] = {}
        healthy: dict[tuple[str, str], bool] = {}  # where a new check starts from
        for state in clusters:
            settings = state.spec.health_check
            if settings is not None:
                for e in state.endpoints:
                    wanted[(state.name, e.address)] = settings
                    healthy[(state.name, e.address)] = e.stats.check_healthy
        self._tasks.sync(wanted, lambda key, settings: self._run(key, settings, healthy[key]))

    def checking(self) -> set[tuple[str, str]]:
        """(cluster, address) of every endpoint being checked."""
        return self._tasks.keys()

    async def stop(self) -> None:
        """Cancels every check and waits for their channels to close."""
        await self._tasks.stop()

    async def _run(self, key: tuple[str, str], settings: CheckSettings, healthy: bool) -> None:
        cluster, address = key
        verdict = Verdict(healthy, settings)
        probe = _Probe(self._dialer, address, health_pb2.HealthCheckRequest(service=settings.service_name))
        try:
            await asyncio.sleep(self._jitter(settings))  # spread the first round too
            while True:
                if verdict.record(await probe.check(settings.timeout)):
                    self._on_change(cluster, address, verdict.healthy)
                await asyncio.sleep(settings.interval + self._jitter(settings))
        finally:
            await probe.close()

    def _jitter(self, settings: CheckSettings) -> float:
        return settings.interval * settings.jitter_fraction * self._rng.random()

    def __repr__(self) -> str:
        return f"<HealthChecker checking={len(self._tasks)} stopping={self._tasks.stopping}>"


class _Probe:
    """Check calls to one endpoint over a connection kept between checks."""

    def __init__(self, dialer: Dialer, address: str, request: health_pb2.HealthCheckRequest) -> None:
        self._dialer, self._address, self._request = dialer, address, request
        self._channel: Channel | None = None

    async def check(self, timeout: float) -> bool:
        """One Check call, connecting first if needed: True if SERVING within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                response = await self._call(timeout)
        except (RpcError, TimeoutError) as e:
            log.debug("health check of %s failed: %s", self._address, e or f"no answer within {timeout:g}s")
            await self.close()   # a fresh connection for the next check
            return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def _call(self, timeout: float) -> health_pb2.HealthCheckResponse:
        if self._channel is None or self._channel.closed:
            await self.close()
            self._channel = await self._dialer.connect(self._address, timeout)
        return await self._channel.unary(CHECK, self._request, health_pb2.HealthCheckResponse, timeout=timeout)

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

