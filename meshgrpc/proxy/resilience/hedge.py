"""Hedging (gRFC A6): parallel attempts for a call whose first attempt is slow.

After `hedge_after` without response headers another attempt starts, up to
`max_attempts` in all; the first attempt to produce response headers wins and the
others are cancelled. An attempt that ends with a non-fatal status
(`hedge_on_statuses`) lets the others go on, and the next hedge starts at once
instead of waiting out its delay; any other status ends the call. Server pushback
delays the next hedge by what it asks, or stops hedging when it forbids retries.
"""

from __future__ import annotations

from meshgrpc.config.specs import HedgeSpec
from meshgrpc.proxy.resilience.retry import NO_RETRY


class HedgeState:
    """One call's hedging so far."""

    __slots__ = ("policy", "started", "stopped")

    def __init__(self, policy: HedgeSpec) -> None:
        self.policy = policy
        self.started = 1  # attempts started, the first included
        self.stopped = False  # pushback forbade further hedges

    def may_start(self) -> bool:
        return not self.stopped and self.started < self.policy.max_attempts

    def fatal(self, status: int | None) -> bool:
        """Whether an attempt ending with `status` ends the whole call."""
        return status not in self.policy.non_fatal_codes

    def next_delay(self, pushback: float | None) -> float | None:
        """Seconds until the next hedge after a non-fatal failure (None: no more)."""
        if pushback == NO_RETRY:
            self.stopped = True
            return None
        if not self.may_start():
            return None
        return pushback if pushback is not None else 0.0

    def __repr__(self) -> str:
        return f"<HedgeState started={self.started}/{self.policy.max_attempts} stopped={self.stopped}>"
