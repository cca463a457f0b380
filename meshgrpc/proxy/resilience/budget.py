"""Retry budgets (linkerd2-proxy's model, tower's TpsBudget): retries and hedges
to a cluster are allowed in proportion to the calls it receives.

In any window of `ttl` seconds, retries stay within
`retry_ratio` x (calls of that window) + `min_retries_per_second` x ttl.
The reserve lets a quiet cluster retry at all; the ratio caps how much a failing
cluster's load can grow (a 0.2 ratio adds at most 20%), so retries never turn an
overload into a collapse. The window slides in SLOTS steps, each counted once.
"""

from __future__ import annotations

from typing import Callable

from meshgrpc.config.specs import RetryBudgetSpec

SLOTS = 10


class RetryBudget:
    """Deposits (calls) and withdrawals (retries) over a sliding window. Used on the
    event loop thread only; `clock` is monotonic seconds."""

    __slots__ = ("spec", "_clock", "_slot_len", "_calls", "_retries", "_current", "_slot_start",
                 "_reserve")

    def __init__(self, spec: RetryBudgetSpec, clock: Callable[[], float]) -> None:
        self.spec = spec
        self._clock = clock
        self._slot_len = spec.ttl / SLOTS
        self._calls = [0] * SLOTS
        self._retries = [0] * SLOTS
        self._current = 0
        self._slot_start = clock()
        self._reserve = spec.min_retries_per_second * spec.ttl

    def deposit(self) -> None:
        """One original call to the cluster."""
        self._advance()
        self._calls[self._current] += 1

    def withdraw(self) -> bool:
        """True, and counted, if one more retry fits the budget now."""
        self._advance()
        allowed = self._reserve + self.spec.retry_ratio * sum(self._calls)
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[self._current] += 1
        return True

    def _advance(self) -> None:
        elapsed = self._clock() - self._slot_start
        if elapsed < self._slot_len:
            return
        steps = min(SLOTS, int(elapsed / self._slot_len))
        for _ in range(steps):
            self._current = (self._current + 1) % SLOTS
            self._calls[self._current] = self._retries[self._current] = 0
        self._slot_start += steps * self._slot_len if steps < SLOTS else elapsed

    def __repr__(self) -> str:
        return (f"<RetryBudget calls={sum(self._calls)} retries={sum(self._retries)} "
                f"ratio={self.spec.retry_ratio} reserve={self._reserve:g}>")
