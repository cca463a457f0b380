"""Zone preference: keep calls in the proxy's own zone while it can take them.

With `--zone Z` the proxy sends a cluster's calls only to its usable endpoints
in zone Z, provided that zone is healthy enough: at least one of its endpoints
is usable and the usable share of the zone's eligible endpoints is at least the
cluster's panic threshold (the same number, so one knob says "this much of a
group must be up before we trust it with all the traffic"). Otherwise calls
spill over to every usable endpoint of the cluster, in all zones. With no zone
set, or no endpoint in it, nothing changes.

This is the simple form of Envoy's zone-aware routing: all-or-nothing rather
than proportional, which is enough while zones are sized alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshgrpc.proxy.balancer.panic import in_panic

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


def prefer_local(eligible: tuple[EndpointState, ...], usable: tuple[EndpointState, ...],
                 local_zone: str, percent: int) -> tuple[tuple[EndpointState, ...], bool]:
    """(endpoints to balance over, whether they are the local zone only)."""
    if not local_zone:
        return usable, False
    local_usable = tuple(e for e in usable if e.zone == local_zone)
    if not local_usable:
        return usable, False
    local_eligible = sum(1 for e in eligible if e.zone == local_zone)
    if in_panic(len(local_usable), local_eligible, percent):
        return usable, False  # spill over
    return local_usable, True
