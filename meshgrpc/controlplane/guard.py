"""Refusing destructive config changes before they are committed. Pure: each rule
judges a Plan against the state it would replace and returns why it is refused,
or None.

- Emptying: a change that leaves no configured resources where there were some.
  The management API refuses it unless the request says `allow_empty`
  (`meshgrpc apply --replace --allow-empty`); a --config file edit never gets it,
  since a file that became empty is far likelier a truncated copy than a wish.
- Removal share: a --config file edit that removes more than a share of the
  configured resources (the control plane's --max-removal-share, default 1.0, so
  by default only the emptying rule applies to the file).

Registrations are not counted: they come and go with service instances.
"""

from __future__ import annotations

from collections.abc import Callable

from meshapi.v1 import management_pb2
from meshgrpc.controlplane.state import MeshState, Plan

Guard = Callable[[MeshState, Plan], "str | None"]


def configured_count(state: MeshState) -> int:
    return sum(len(by_name) for by_name in state.configured.values())


def removed_count(plan: Plan) -> int:
    return sum(1 for c in plan.changes if c.action == management_pb2.ResourceChange.REMOVED)


def emptying_problem(before: MeshState, plan: Plan) -> str | None:
    count = configured_count(before)
    if count and not configured_count(plan.state):
        return f"it would remove every configured resource ({count})"
    return None


def removal_limit(max_share: float) -> Guard:
    """The file watch's guard: emptying, then more than `max_share` (0-1) removed."""
    def guard(before: MeshState, plan: Plan) -> str | None:
        if problem := emptying_problem(before, plan):
            return problem
        count, removed = configured_count(before), removed_count(plan)
        if count and removed / count > max_share:
            return (f"it would remove {removed} of {count} configured resources ({removed / count:.0%}), "
                    f"more than --max-removal-share {max_share:g} allows")
        return None
    return guard
