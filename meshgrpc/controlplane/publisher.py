"""Turning committed mesh state into versioned snapshots in the cache, coalescing bursts.

Changes are committed by the controller as they come; the push that follows is
debounced: it waits for a quiet window (`window` seconds without a new change),
but never longer than `cap_factor` windows after the first pending change, so a
steady trickle of registrations cannot starve proxies.

Versions: a store shared by replicas (etcd) derives them from its revisions and
hands them over with the state, so every replica serves the same version for the
same state; otherwise (SQLite) the publisher numbers them: a type's version (an
integer string) is bumped only when the digest of its served resources changes,
and the new versions are recorded in the store before the snapshot is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Mapping

from meshgrpc.tasks import OwnedTask
from meshgrpc.config import resources
from meshgrpc.controlplane.state import MeshState
from meshgrpc.controlplane.store import TypeVersion
from meshgrpc.xds.snapshot import Snapshot, mesh_digests

log = logging.getLogger(__name__)


class Debouncer:
    """When to push: the pure decision, driven by the times passed in."""

    def __init__(self, window: float, cap_factor: float = 10.0) -> None:
        self.window = window
        self.cap = window * cap_factor
        self._first: float | None = None
        self._last: float | None = None

    def changed(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def due_at(self) -> float | None:
        """When the pending changes must be pushed; None when nothing is pending."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.window, self._first + self.cap)

    def take(self, now: float) -> bool:
        """True (and nothing pending any more) when a push is due at `now`."""
        due = self.due_at()
        if due is None or now < due:
            return False
        self._first = self._last = None
        return True

    def clear(self) -> bool:
        """Forgets the pending changes (they are being pushed now); True if there were any."""
        pending = self._first is not None
        self._first = self._last = None
        return pending

    def __repr__(self) -> str:
        return f"Debouncer(window={self.window}, due_at={self.due_at()})"


def next_versions(current: Mapping[str, TypeVersion], digests: Mapping[str, str]) -> dict[str, TypeVersion]:
    """The types whose content changed, each with its next version ("1" for a new type)."""
    bumped = {}
    for type_url, digest in digests.items():
        old = current.get(type_url)
        if old is None:
            bumped[type_url] = TypeVersion("1", digest)
        elif old.digest != digest:
            bumped[type_url] = TypeVersion(str(int(old.version) + 1), digest)
    return bumped


class Publisher:
    """Owns the versions and the push task. `notify()` after each committed change."""

    def __init__(self, source: Callable[[], MeshState], record: Callable[[dict[str, TypeVersion]], None], cache,
                 versions: Mapping[str, TypeVersion], window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._record = record
        self._cache = cache
        self.versions: dict[str, TypeVersion] = dict(versions)
        self.debouncer = Debouncer(window)
        self._clock = clock
        self._wake = asyncio.Event()
        self._task = OwnedTask("publisher", self._run)
        self.pushes = 0
        # When the oldest committed change not yet published was committed (clock
        # seconds); told to `on_published` with the snapshot that carries it.
        self._changed_at: float | None = None
        self.on_published: Callable[[float], None] = lambda committed_at: None

    def notify(self) -> None:
        now = self._clock()
        self.debouncer.changed(now)
        if self._changed_at is None:
            self._changed_at = now
        self._wake.set()

    def publish(self) -> bool:
        """Computes versions, records them, then sets the snapshot (commit before
        push). Returns False, setting nothing, when no type's content changed or
        the state is not settled yet."""
        state = self._source()
        if not state.settled:
            return False
        mesh = state.served()
        bumped = self._bumped(state, mesh)
        if not bumped and self._cache.current is not None:
            self._changed_at = None  # nothing served changed: nothing to converge on
            return False
        if state.versions is None:
            self._record(bumped)
        self.versions.update(bumped)
        self._cache.set(Snapshot.from_mesh(mesh, {t: tv.version for t, tv in self.versions.items()}))
        self.pushes += 1
        changed_at, self._changed_at = self._changed_at, None
        if changed_at is not None:
            self.on_published(changed_at)
        log.info("serving %s", ", ".join(f"{resources.SHORT_NAME[t]}={tv.version}" for t, tv in self.versions.items()))
        return True

    def _bumped(self, state: MeshState, mesh) -> dict[str, TypeVersion]:
        if state.versions is None:
            return next_versions(self.versions, mesh_digests(mesh))
        derived = {t: TypeVersion(v, "") for t, v in state.versions.items()}
        return {t: tv for t, tv in derived.items() if self.versions.get(t) != tv}

    def flush(self) -> None:
        """Pushes pending changes now: operators' applies and deletes skip the debounce
        so that their response carries the versions being served."""
        if self.debouncer.clear():
            self.publish()

    def start(self) -> asyncio.Task:
        return self._task.start()

    async def stop(self) -> None:
        """Cancels the push task; a pending change is already committed and is pushed at next start."""
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            due = self.debouncer.due_at()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            if not self.debouncer.take(self._clock()):
                # A new change moves the deadline, so wake on it as well as on time.
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - self._clock()))
                except TimeoutError:
                    pass
                continue
            self.publish()
