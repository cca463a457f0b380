"""Wakeup: asyncio.Event for exactly one waiter, without Event's deque of waiters
(624 bytes each on CPython): the control plane holds a few per subscribed stream,
for thousands of streams. Level-triggered like Event: set() before wait() makes
the wait return at once; clear() lowers it. A second concurrent waiter is a bug
(RuntimeError)."""

from __future__ import annotations

import asyncio


class Wakeup:
    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        if self._waiter is not None:
            raise RuntimeError("Wakeup has one waiter at a time")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
