"""Wakeup (meshgrpc/wakeup.py): a one-waiter Event, level-triggered."""

from __future__ import annotations

import asyncio

import pytest

from meshgrpc.wakeup import Wakeup


def test_a_set_before_the_wait_returns_at_once_and_clear_lowers_it():
    async def main():
        wakeup = Wakeup()
        wakeup.set()
        await asyncio.wait_for(wakeup.wait(), 1.0)
        wakeup.clear()
        assert not wakeup.is_set()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), 0.05)
    asyncio.run(main())


def test_set_wakes_the_waiter_and_a_cancelled_wait_leaves_it_usable():
    async def main():
        wakeup = Wakeup()
        waiter = asyncio.create_task(wakeup.wait())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await wakeup.wait()   # one waiter at a time
        wakeup.set()
        await asyncio.wait_for(waiter, 1.0)
        wakeup.clear()
        cancelled = asyncio.create_task(wakeup.wait())
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        again = asyncio.create_task(wakeup.wait())
        await asyncio.sleep(0)
        wakeup.set()
        await asyncio.wait_for(again, 1.0)
    asyncio.run(main())
