"""The one reference the data path reads per new stream: the routing table and
cluster set in effect, swapped whole when config changes.

Config updates build a new immutable `ProxyState` and `swap()` it in; a call reads
`holder.current` once when it starts and keeps what it read, so calls in flight
finish on the config they started with and no lock is ever taken on the call path.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyState:
    """routes: a compiled RouteTable (router.py), or None before the first route
    config arrives (every call then fails UNAVAILABLE); clusters: a ClusterSet
    (cluster.py); versions: type_url -> version string, for config_dump and logs;
    policies: the AuthorizationPolicySpecs the proxy's inbound side compiles for its
    service (inbound.py)."""

    routes: Any
    clusters: Any
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    policies: tuple = ()


class StateHolder:
    """Holds the current ProxyState. Readers take `.current` (one attribute read);
    writers replace it with `swap(new)`, which returns the previous one."""

    __slots__ = ("current",)

    def __init__(self, initial: ProxyState) -> None:
        self.current = initial

    def swap(self, new: ProxyState) -> ProxyState:
        old, self.current = self.current, new
        return old

    def __repr__(self) -> str:
        return f"StateHolder(versions={self.current.versions!r})"
