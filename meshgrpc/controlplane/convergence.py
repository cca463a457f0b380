"""How long a committed change takes to reach every connected proxy: from the
commit to the last ACK of the snapshot that carries it.

When a snapshot is published, the streams not yet in sync with it are the ones
the change must still reach (a stream the change does not touch, e.g. a scoped
proxy that holds none of the changed clusters, is in sync at once and not
waited for). As each of those answers, it leaves the change's set: by an ACK
that brings it in sync, by a NACK (it keeps its last good config: counted as a
NACK, not waited for) or by disconnecting. When the set is empty the change has
converged and its time is observed. A change superseded by a newer snapshot
before converging converges when its streams are in sync with the newer one.
A change no stream had to receive is not observed (there was no ACK to time).

Bounded: at most MAX_PENDING changes are tracked, each for at most MAX_AGE_S;
past either the oldest is abandoned (counted). Pure: the clock is passed in;
the caller says which streams are unsynced and when one answers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable

MAX_PENDING = 64
MAX_AGE_S = 600.0


class _Change:
    __slots__ = ("committed_at", "waiting")

    def __init__(self, committed_at: float, waiting: set) -> None:
        self.committed_at = committed_at
        self.waiting = waiting


class ConvergenceTracker:
    """`observe(seconds)` is called once per converged change; `abandon()` once per
    change given up on (too many pending, or older than MAX_AGE_S)."""

    def __init__(self, observe: Callable[[float], None], abandon: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, max_pending: int = MAX_PENDING,
                 max_age_s: float = MAX_AGE_S) -> None:
        self._observe, self._abandon, self._clock = observe, abandon, clock
        self._max_pending, self._max_age = max_pending, max_age_s
        self._pending: deque[_Change] = deque()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def published(self, committed_at: float, unsynced: Iterable[Hashable]) -> None:
        """A snapshot carrying changes committed from `committed_at` on went out;
        `unsynced` are the streams not yet in sync with it."""
        waiting = set(unsynced)
        if not waiting:
            return
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._abandon()
        self._pending.append(_Change(committed_at, waiting))

    def answered(self, stream: Hashable, synced: bool, nacked: bool = False) -> None:
        """`stream` answered a response: it is now in sync (`synced`), or NACKed (`nacked`)."""
        if synced or nacked:
            self._settle(stream)

    def gone(self, stream: Hashable) -> None:
        """`stream` ended: no change waits for it any more."""
        self._settle(stream)

    def waiting_for(self, stream: Hashable) -> bool:
        return any(stream in change.waiting for change in self._pending)

    def _settle(self, stream: Hashable) -> None:
        now = self._clock()
        for change in list(self._pending):
            change.waiting.discard(stream)
            if not change.waiting:
                self._pending.remove(change)
                self._observe(now - change.committed_at)
            elif now - change.committed_at > self._max_age:
                self._pending.remove(change)
                self._abandon()

    def __repr__(self) -> str:
        return f"<ConvergenceTracker pending={[len(c.waiting) for c in self._pending]}>"

