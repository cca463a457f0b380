"""SnapshotCache: holds the one current Snapshot and tells waiters when it changes.

It knows nothing of gRPC or streams (compare go-control-plane's pkg/cache). It is
used from a single asyncio event loop: `set` and listeners run on that loop's
thread. Callers may not mutate a snapshot they got from `current`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshgrpc.errors import ConfigError
from meshgrpc.xds.snapshot import Snapshot


class SnapshotCache:
    def __init__(self) -> None:
        self._current: Snapshot | None = None
        self._changed = asyncio.Event()
        self._listeners: set[Callable[[], None]] = set()

    @property
    def current(self) -> Snapshot | None:
        """The snapshot being served, or None before the first `set`."""
        return self._current

    def set(self, snapshot: Snapshot) -> None:
        """Makes `snapshot` current and wakes every waiter and listener. Raises
        ConfigError (and changes nothing) when the snapshot is inconsistent:
        only consistent snapshots go out."""
        errors = snapshot.consistency_errors()
        if errors:
            raise ConfigError(errors, source="snapshot")
        self._current = snapshot
        # Replace the event so that later waiters wait for the *next* change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self._listeners):
            listener()

    async def wait_for_change(self, seen: Snapshot | None, timeout: float) -> Snapshot | None:
        """Returns the current snapshot as soon as it is not `seen` (at once if it
        already differs), or whatever is current after `timeout` seconds."""
        if self._current is not seen:
            return self._current
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            pass
        return self._current

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Calls `listener()` (synchronously, inside `set`) after each change; it
        must only schedule work (e.g. set an asyncio.Event). Returns the function
        that removes it. This is how each discovery stream is woken without a
        task of its own per stream."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)
