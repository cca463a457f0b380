"""One identity per node id: a discovery stream names its node in its first
request, and while any stream holds a node id, another stream may take the same
id only with the same identity (a proxy reconnecting, or its second stream while
the first winds down). A stream under another identity is refused, so nobody can
pose as a proxy to receive its config or show up as it in `meshgrpc status`.
Shared by the sidecars' discovery server and the proxyless ADS server.
"""

from __future__ import annotations

from collections.abc import Callable


class ClaimRefused(Exception):
    def __init__(self, node_id: str, holder: str) -> None:
        super().__init__(f"node id {node_id!r} is held by a stream of another identity ({holder}); "
                         "a node id belongs to one identity while its streams live")


class NodeClaims:
    """Node id -> (identity key, streams holding it)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, int]] = {}

    def claim(self, node_id: str, identity: str) -> Callable[[], None]:
        """Takes `node_id` for `identity`; returns the release. Raises ClaimRefused."""
        holder, count = self._held.get(node_id, (identity, 0))
        if holder != identity:
            raise ClaimRefused(node_id, holder)
        self._held[node_id] = (identity, count + 1)
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            who, n = self._held[node_id]
            if n <= 1:
                del self._held[node_id]
            else:
                self._held[node_id] = (who, n - 1)
        return release

    def holder(self, node_id: str) -> str | None:
        held = self._held.get(node_id)
        return held[0] if held else None

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"NodeClaims(nodes={len(self._held)})"
