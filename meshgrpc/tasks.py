"""Background tasks with an owner: every long-running loop in meshgrpc is started
through an OwnedTask held by the component that runs it, and that component's
`stop()` cancels it and waits for it to end, so nothing outlives its owner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

log = logging.getLogger(__name__)


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
