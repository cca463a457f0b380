"""The picker of a cluster with exactly one candidate endpoint: no draw, no maths.

Every policy returns it for one endpoint, so a one-endpoint cluster costs one
attribute read per call whatever its lb_policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshgrpc.proxy.balancer.explanation import PickExplanation

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


class SinglePicker:
    __slots__ = ("_endpoint",)

    def __init__(self, endpoint: EndpointState) -> None:
        self._endpoint = endpoint

    def pick(self, hash_key: bytes | None = None) -> EndpointState:
        return self._endpoint

    def explain(self, hash_key: bytes | None = None) -> PickExplanation:
        return PickExplanation(self._endpoint, "the only endpoint balanced over")

    def __repr__(self) -> str:
        return f"<SinglePicker {self._endpoint.address}>"
