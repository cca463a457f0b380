"""Registration leases: a registered endpoint stays in its cluster's set while its
lease is renewed by heartbeats, and leaves when the lease is released (the stream
ended) or expires (no heartbeat for the TTL).

`Leases` is the pure lease table (time passed in); `Registry` ties it to the
controller and the store and owns the sweeper task. Each registration also holds
a lease in the store (store.py): with etcd that lease is what keeps the
registration alive across replicas, so one that dies takes no registration with
it until the lease expires, and a stream that moves to another replica resumes
its lease (`register(..., resume=lease)`) without a commit. With SQLite the
registrations are committed, so after a restart `restore()` gives every stored
one a fresh TTL: a live instance re-registers within it (static stability), a
dead one expires.

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
from meshgrpc.controlplane.store import Store
from meshgrpc.errors import NotFound, Unavailable

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

    def grant(self, key: Key, now: float, token: int = 0) -> Lease:
        """A lease on `key` until now + ttl; `token` names it (default: a fresh one)."""
        lease = Lease(key, token or next(self._tokens))
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

    def token_of(self, key: Key) -> int:
        return self._expiry.get(key, (0, 0.0))[0]

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

    def __init__(self, controller: Controller, store: Store, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._controller = controller
        self._store = store
        self._clock = clock
        self.leases = Leases(ttl)
        self._task = OwnedTask("lease-sweeper", self._sweep_forever)
        self._frozen = False

    @property
    def ttl(self) -> float:
        return self.leases.ttl

    def restore(self, keys: Iterable[Key]) -> None:
        """Fresh leases for registrations read back from a store that holds no leases."""
        now = self._clock()
        for key in keys:
            self.leases.grant(key, now)

    async def register(self, instance: management_pb2.Instance, resume: int = 0) -> Lease:
        """Commits the registration (raising if refused) and grants its lease; with
        `resume`, carries on that lease when it still holds this registration."""
        key = (instance.cluster, instance.address)
        if resume and await self._resumable(key, instance, resume):
            return self.leases.grant(key, self._clock(), resume)
        lease = await self._store.grant_lease(self.ttl)
        try:
            await self._controller.register(instance, lease)
        except BaseException:
            await self._end_quietly(lease)
            raise
        return self.leases.grant(key, self._clock(), lease)

    async def _resumable(self, key: Key, instance: management_pb2.Instance, lease: int) -> bool:
        if self._controller.state.registrations.get(key[0], {}).get(key[1]) != instance:
            return False
        if self.leases.token_of(key) == lease:
            return True
        return self._store.lease_of(key) == lease and await self._store.keep_lease(lease)

    async def heartbeat(self, lease: Lease) -> None:
        """Renews the lease; raises NotFound when the registration is gone."""
        cluster, address = lease.key
        if address not in self._controller.state.registrations.get(cluster, {}):
            self.leases.release(lease)
            raise NotFound(f"registration of {address} in cluster {cluster!r} is gone (cluster deleted or lease expired)")
        if not self.leases.renew(lease, self._clock()):
            raise NotFound(f"registration of {address} in cluster {cluster!r} expired or was taken over")
        try:
            alive = await self._store.keep_lease(lease.token)
        except Unavailable as e:
            # The store's lease outlives a short outage (its TTL is at least ours):
            # the next heartbeat renews it.
            log.warning("could not renew the store lease of %s: %s", address, e)
            return
        if not alive:
            self.leases.release(lease)
            raise NotFound(f"the lease of {address} in cluster {cluster!r} expired in the store")

    async def release(self, lease: Lease) -> None:
        # Once frozen (shutting down), streams end because the server stops, not
        # because instances left: their registrations stay committed for the restart
        # (or, with etcd, until their lease expires or another replica resumes it).
        if not self._frozen and self.leases.release(lease):
            if await self._controller.unregister(*lease.key):
                log.info("registration of %s in cluster %r ended", lease.key[1], lease.key[0])
            await self._end_quietly(lease.token)

    async def sweep(self) -> list[Key]:
        """Unregisters every registration whose lease expired."""
        gone = self.leases.expire(self._clock())
        for cluster, address in gone:
            if await self._controller.unregister(cluster, address):
                log.info("registration of %s in cluster %r expired", address, cluster)
        return gone

    async def _end_quietly(self, lease: int) -> None:
        try:
            await self._store.end_lease(lease)
        except Unavailable as e:   # it expires by itself
            log.warning("could not end store lease %d: %s", lease, e)

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
            try:
                await self.sweep()
            except Unavailable as e:   # the store is unreachable: the leases are swept next time
                log.warning("lease sweep postponed: %s", e)
