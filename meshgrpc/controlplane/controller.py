"""The single writer of the mesh state: plan, commit, swap, notify.

Every change (apply, delete, registration) is decided by a pure plan from
state.py, committed to the store in one transaction, and only then made current
by swapping the state reference and telling the publisher. Methods never await,
so on the event loop no two changes interleave and nothing half-applies.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.controlplane import state as mesh_state
from meshgrpc.controlplane.guard import Guard
from meshgrpc.controlplane.state import MeshState, Plan
from meshgrpc.controlplane.store import Store
from meshgrpc.errors import FailedPrecondition

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, store: Store, state: MeshState, on_change: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._state = state
        self.on_change = on_change

    @property
    def state(self) -> MeshState:
        return self._state

    def apply(self, incoming: resources_pb2.MeshConfig, replace: bool, dry_run: bool = False,
              config_digest: str | None = None, guard: Guard | None = None) -> list[management_pb2.ResourceChange]:
        """Validates and applies `incoming`; raises ConfigError and changes nothing when invalid,
        and FailedPrecondition (a dry run too) when `guard` refuses the plan (guard.py)."""
        plan = mesh_state.plan_apply(self._state, incoming, replace)
        if guard is not None and (problem := guard(self._state, plan)):
            raise FailedPrecondition(problem)
        if config_digest is not None:
            plan = dataclasses.replace(plan, commit=dataclasses.replace(plan.commit, config_digest=config_digest))
        return self._execute(plan, dry_run)

    def delete(self, type_url: str, name: str, dry_run: bool = False) -> list[management_pb2.ResourceChange]:
        return self._execute(mesh_state.plan_delete(self._state, type_url, name), dry_run)

    def register(self, instance: management_pb2.Instance) -> None:
        self._execute(mesh_state.plan_register(self._state, instance), dry_run=False)

    def unregister(self, cluster: str, address: str) -> bool:
        plan = mesh_state.plan_unregister(self._state, cluster, address)
        if plan is None:
            return False
        self._execute(plan, dry_run=False)
        return True

    def _execute(self, plan: Plan, dry_run: bool) -> list[management_pb2.ResourceChange]:
        if dry_run:
            return plan.changes
        self._store.commit(plan.commit)   # durable first: a crash after this serves the change
        self._state = plan.state
        if plan.commit.resources or plan.commit.registrations:
            self.on_change()
        return plan.changes
