"""Choosing around server pushback: when a policy's own choice is an endpoint that
asked for no calls yet (EndpointStats.pushed_back_until, set by
EndpointState.pushed_back), the call goes to another one. Only that rare case
scans; an ordinary pick only compares one number."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


def first_available(endpoints: tuple[EndpointState, ...], start: int, now: float) -> EndpointState:
    """The first endpoint from `start` on (cyclically) not pushed back at `now`; when
    every one is, the one whose pushback ends first (a cluster that pushes back as a
    whole still gets its calls, as in panic mode)."""
    n = len(endpoints)
    for k in range(n):
        e = endpoints[(start + k) % n]
        if e.stats.pushed_back_until <= now:
            return e
    return min(endpoints, key=lambda e: e.stats.pushed_back_until)
