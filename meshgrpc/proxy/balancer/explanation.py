"""What a picker tells `meshgrpc explain`: the endpoint it would take for a call
now and why, from the same decision code as its pick() (Picker.explain).

A picker reports only its own decision: its score per endpoint where it scores
them, what the score means, and the endpoints it drew. The cluster adds every
endpoint's inputs (rtt estimate, pending, weight, health, ejection, zone) and
why the ones it does not balance over are left out (ClusterState.explain).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshgrpc.proxy.endpoint import EndpointState


@dataclasses.dataclass(frozen=True)
class PickExplanation:
    chosen: EndpointState | None
    why: str
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)  # address -> score
    score: str = ""  # what the score is, e.g. "cost = rtt estimate x (pending + 1) / weight; lower wins"
    drawn: tuple[str, ...] = ()  # addresses drawn at random for this pick, in draw order
