"""Panic mode: when too few of a cluster's endpoints are usable, use them all.

If fewer than `panic_threshold_percent` (default 50) of a cluster's eligible
endpoints are usable (passing health checks, not ejected, not marked UNHEALTHY
by the control plane), the cluster balances over every eligible endpoint
instead: a health signal that takes out most of a cluster is more likely wrong
(a broken check, a network blip) than right, and the few left would be
overloaded anyway (Envoy's healthy panic threshold). Eligible means in the
cluster with weight > 0 and not DRAINING: a draining endpoint never gets new
calls, panic or not. A threshold of 0 disables panic mode. With no usable
endpoint at all and a threshold above 0, every eligible endpoint is picked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


def in_panic(usable: int, eligible: int, percent: int) -> bool:
    """True when `usable` of `eligible` endpoints is below `percent`."""
    return eligible > 0 and usable * 100 < percent * eligible


def candidates(eligible: tuple[EndpointState, ...], usable: tuple[EndpointState, ...],
               percent: int) -> tuple[tuple[EndpointState, ...], bool]:
    """(endpoints to balance over, whether the cluster is in panic)."""
    if in_panic(len(usable), len(eligible), percent):
        return eligible, True
    return usable, False
