"""Background tasks with an owner: every long-running loop in meshgrpc is started
through an OwnedTask (or a KeyedTasks, for one task per key) held by the component
that runs it, and that component's `stop()` cancels it and waits for it to end, so
nothing outlives its owner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, ...]


class OwnedTask:
    """One background task. `start()` runs `factory()` once (again only after a
    stop); `await stop()` cancels it and waits for it. A task that ends by raising
    is logged at once rather than when it is garbage collected."""

    __slots__ = ("name", "_factory", "_task")

    def __init__(self, name: str, factory: Callable[[], Coroutine]) -> None:
        self.name = name
        self._factory = factory
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._factory(), name=self.name)
            self._task.add_done_callback(self._log_failure)
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _log_failure(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", self.name, exc_info=task.exception())

    def __repr__(self) -> str:
        return f"<OwnedTask {self.name} running={self.running}>"


class KeyedTasks:
    """One background task per key, a tuple of names (e.g. (cluster, address)), each running with the
    settings it was started with. `sync(wanted, run)` cancels the tasks whose key is
    no longer wanted or whose settings changed, and starts `run(key, settings)` for
    each wanted key without a task; `forget(key)`, from a task that ends on its own,
    lets the next sync start it again. `await stop()` cancels every task and waits
    for them (they may be closing connections), at most `stop_timeout`."""

    __slots__ = ("what", "_stop_timeout", "_tasks", "_stopping")

    def __init__(self, what: str, stop_timeout: float = 5.0) -> None:
        self.what = what
        self._stop_timeout = stop_timeout
        self._tasks: dict[Key, tuple[Any, asyncio.Task]] = {}
        self._stopping: set[asyncio.Task] = set()

    def keys(self) -> set:
        return set(self._tasks)

    @property
    def stopping(self) -> int:
        return len(self._stopping)

    def __len__(self) -> int:
        return len(self._tasks)

    def sync(self, wanted: dict[Key, Any], run: Callable[[Key, Any], Coroutine]) -> None:
        for key, (settings, _) in list(self._tasks.items()):
            if key not in wanted or wanted[key] != settings:
                self._cancel(key)
        loop = asyncio.get_running_loop()
        for key, settings in wanted.items():
            if key not in self._tasks:
                task = loop.create_task(run(key, settings), name=f"{self.what} {'/'.join(key)}")
                task.add_done_callback(_log_failure)
                self._tasks[key] = (settings, task)

    def forget(self, key: Key) -> None:
        self._tasks.pop(key, None)

    async def stop(self) -> None:
        for key in list(self._tasks):
            self._cancel(key)
        if self._stopping:
            _, still = await asyncio.wait(set(self._stopping), timeout=self._stop_timeout)
            if still:
                log.warning("%d %s tasks did not stop within %.0fs", len(still), self.what, self._stop_timeout)

    def _cancel(self, key: Key) -> None:
        _, task = self._tasks.pop(key)
        task.cancel()
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended with an error", task.get_name(), exc_info=task.exception())
