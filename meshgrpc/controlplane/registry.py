"""Registration leases: a registered endpoint stays in its cluster's set while its
lease is renewed by heartbeats, and leaves when the lease is released (the stream
ended) or expires (no heartbeat for the TTL).

`Leases` is the pure lease table (time passed in); `Registry` ties it to the
controller and owns the sweeper task. Registrations themselves are committed, so
after a restart `restore()` gives every stored one a fresh TTL: a live instance
re-registers within it (static stability), a dead one expires.

A newer registration of the same (cluster, address) takes the lease over: the
older stream's heartbeats and release no longer count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from typing import Callable, Iterable

from meshapi.v1 import management_pb2
from meshgrpc.tasks import OwnedTask
from meshgrpc.controlplane.controller import Controller
from meshgrpc.errors import NotFound

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (cluster, address)


@dataclasses.dataclass(frozen=True)
class Lease:
    key: Key
    token: int


class Leases:
    """Who holds each registration and until when. Pure: `now` is passed in."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expiry: dict[Key, tuple[int, float]] = {}  # key -> (token, expires_at)
        self._tokens = itertools.count(1)

    def grant(self, key: Key, now: float) -> Lease:
        lease = Lease(key, next(self._tokens))
        self._expiry[key] = (lease.token, now + self.ttl)
        return lease

    def renew(self, lease: Lease, now: float) -> bool:
        """Extends the lease; False when it expired or was taken over."""
        if not self.holds(lease):
            return False
        self._expiry[lease.key] = (lease.token, now + self.ttl)
        return True

    def release(self, lease: Lease) -> bool:
        """Drops the lease; True when it was still the current one."""
        if not self.holds(lease):
            return False
        del self._expiry[lease.key]
        return True

    def holds(self, lease: Lease) -> bool:
        current = self._expiry.get(lease.key)
        return current is not None and current[0] == lease.token

    def expire(self, now: float) -> list[Key]:
        """Removes and returns the registrations whose lease ran out by `now`."""
        gone = [key for key, (_, at) in self._expiry.items() if at <= now]
        for key in gone:
            del self._expiry[key]
        return gone

    def __len__(self) -> int:
        return len(self._expiry)

    def __repr__(self) -> str:
        return f"Leases(ttl={self.ttl}, held={len(self._expiry)})"


class Registry:
    """Registrations through the controller, with leases and an owned sweeper task."""

    def __init__(self, controller: Controller, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._controller = controller
        self._clock = clock
        self.leases = Leases(ttl)
        self._task = OwnedTask("lease-sweeper", self._sweep_forever)
        self._frozen = False

    @property
    def ttl(self) -> float:
        return self.leases.ttl

    def restore(self, keys: Iterable[Key]) -> None:
        """Fresh leases for registrations read back from the store."""
        now = self._clock()
        for key in keys:
            self.leases.grant(key, now)

    def register(self, instance: management_pb2.Instance) -> Lease:
        """Commits the registration (raising if refused) and grants its lease."""
        self._controller.register(instance)
        return self.leases.grant((instance.cluster, instance.address), self._clock())

    def heartbeat(self, lease: Lease) -> None:
        """Renews the lease; raises NotFound when the registration is gone."""
        cluster, address = lease.key
        if address not in self._controller.state.registrations.get(cluster, {}):
            self.leases.release(lease)
            raise NotFound(f"registration of {address} in cluster {cluster!r} is gone (cluster deleted or lease expired)")
        if not self.leases.renew(lease, self._clock()):
            raise NotFound(f"registration of {address} in cluster {cluster!r} expired or was taken over")

    def release(self, lease: Lease) -> None:
        # Once frozen (shutting down), streams end because the server stops, not
        # because instances left: their registrations stay committed for the restart.
        if not self._frozen and self.leases.release(lease):
            if self._controller.unregister(*lease.key):
                log.info("registration of %s in cluster %r ended", lease.key[1], lease.key[0])

    def sweep(self) -> list[Key]:
        """Unregisters every registration whose lease expired."""
        gone = self.leases.expire(self._clock())
        for cluster, address in gone:
            if self._controller.unregister(cluster, address):
                log.info("registration of %s in cluster %r expired", address, cluster)
        return gone

    def start(self) -> asyncio.Task:
        return self._task.start()

    async def stop(self) -> None:
        """Stops the sweeper and freezes the registrations as they are committed."""
        self._frozen = True
        await self._task.stop()

    async def _sweep_forever(self) -> None:
        # A quarter of the TTL keeps expiry within 25% late, bounded for tiny and huge TTLs.
        interval = min(max(self.ttl / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(interval)
            self.sweep()
