"""Circuit breakers (Envoy's): limits on what one proxy sends to one cluster at
once. A call over a limit fails at once, never waits, with a message naming the
limit and the cluster ("cluster greeter: max_requests 10 reached").

`ClusterLoad` holds one cluster's in-flight counts. It outlives config builds (the
next build of the same cluster shares it), so calls started on an older build
decrement what they incremented; the limits are read from the current spec at
each check, so a changed limit applies to the next call.
"""

from __future__ import annotations

from meshgrpc.config.specs import CircuitBreakerSpec
from meshgrpc.proxy.resilience.budget import RetryBudget


class ClusterLoad:
    """In-flight counts of one cluster, against its circuit breaker."""

    __slots__ = ("name", "requests", "pending", "retries")

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0  # calls in flight
        self.pending = 0  # attempts waiting for a connection or a stream slot
        self.retries = 0  # retries and hedges in flight

    def _over(self, breaker: str, current: int, limit: int) -> str | None:
        return f"cluster {self.name}: {breaker} {limit} reached" if current >= limit else None

    def admit_request(self, limits: CircuitBreakerSpec) -> str | None:
        """Why one more call may not start now, or None."""
        return self._over("max_requests", self.requests, limits.max_requests)

    def admit_pending(self, limits: CircuitBreakerSpec) -> str | None:
        """Why one more attempt may not wait for a connection now, or None."""
        return self._over("max_pending_requests", self.pending, limits.max_pending_requests)

    def admit_retry(self, limits: CircuitBreakerSpec, budget: RetryBudget) -> str | None:
        """Why one more retry or hedge may not start now (the breaker first, then
        the budget, which the retry then draws from), or None."""
        refused = self._over("max_retries", self.retries, limits.max_retries)
        if refused is None and not budget.withdraw():
            refused = f"cluster {self.name}: retry budget exhausted"
        return refused

    def __repr__(self) -> str:
        return f"<ClusterLoad {self.name} requests={self.requests} pending={self.pending} retries={self.retries}>"
