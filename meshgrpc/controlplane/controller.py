"""The writer of this replica's mesh state: plan, commit, swap, notify.

Every change (apply, delete, registration) is decided by a pure plan from
state.py, committed to the store in one transaction, and only then made current
by swapping the state reference and telling the publisher. One change at a time
per replica (a lock around plan + commit), so nothing half-applies.

Several replicas may write the same store (etcd). A commit is a compare-and-swap
on the state it was planned on; when another replica committed first the store
raises Conflict, having caught up, and the change is planned again on the newer
state. If the new plan makes exactly the same changes, the two changes commute
and the new plan is committed (a rebase); otherwise the caller gets ABORTED and
nothing of theirs is applied: no change is lost or merged silently. Changes that
other replicas commit arrive through `adopt`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable

import grpc

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.controlplane import state as mesh_state
from meshgrpc.controlplane.guard import Guard
from meshgrpc.controlplane.state import MeshState, Plan
from meshgrpc.controlplane.store import Commit, Conflict, Store
from meshgrpc.errors import FailedPrecondition, MeshError

log = logging.getLogger(__name__)

REBASES = 5   # commits retried on a newer state before giving up with ABORTED

Decide = Callable[[MeshState], Plan]


class Aborted(MeshError):
    code = grpc.StatusCode.ABORTED


class Controller:
    def __init__(self, store: Store, state: MeshState, on_change: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._state = state
        self.on_change = on_change
        # Called after on_change when another replica committed configuration (an
        # apply or delete, not only registrations): pushed without waiting for the
        # debounce, as the applying replica pushes its own at once.
        self.on_configured: Callable[[], None] = lambda: None
        # Told (kind, seconds) of each store commit: "apply", "delete", "register" or
        # "unregister", and how long the store took (the control plane's metrics).
        self.on_commit: Callable[[str, float], None] = lambda kind, seconds: None
        self._lock = asyncio.Lock()

    @property
    def state(self) -> MeshState:
        return self._state

    def adopt(self, state: MeshState) -> None:
        """Makes `state`, committed by another replica, current."""
        configured = state.revision != self._state.revision
        self._state = state
        self.on_change()
        if configured:
            self.on_configured()

    async def apply(self, incoming: resources_pb2.MeshConfig, replace: bool, dry_run: bool = False,
                    config_digest: str | None = None, guard: Guard | None = None) -> list[management_pb2.ResourceChange]:
        """Validates and applies `incoming`; raises ConfigError and changes nothing when invalid,
        and FailedPrecondition (a dry run too) when `guard` refuses the plan (guard.py)."""
        def decide(state: MeshState) -> Plan:
            plan = mesh_state.plan_apply(state, incoming, replace)
            if guard is not None and (problem := guard(state, plan)):
                raise FailedPrecondition(problem)
            if config_digest is None:
                return plan
            return dataclasses.replace(plan, commit=dataclasses.replace(plan.commit, config_digest=config_digest))
        return await self._execute(decide, dry_run, "apply")

    async def delete(self, type_url: str, name: str, dry_run: bool = False) -> list[management_pb2.ResourceChange]:
        return await self._execute(lambda state: mesh_state.plan_delete(state, type_url, name), dry_run, "delete")

    async def register(self, instance: management_pb2.Instance, lease: int = 0) -> None:
        await self._execute(lambda state: mesh_state.plan_register(state, instance, lease), False, "register")

    async def unregister(self, cluster: str, address: str) -> bool:
        if mesh_state.plan_unregister(self._state, cluster, address) is None:
            return False
        await self._execute(lambda state: mesh_state.plan_unregister(state, cluster, address) or _nothing(state),
                            False, "unregister")
        return True

    async def _execute(self, decide: Decide, dry_run: bool, kind: str) -> list[management_pb2.ResourceChange]:
        async with self._lock:
            plan = decide(self._state)
            if dry_run:
                return plan.changes
            for _ in range(REBASES):
                try:
                    # Durable first: a crash after this serves the change.
                    started = time.monotonic()
                    self._state = await self._store.commit(plan.commit, self._state, plan.state)
                    self.on_commit(kind, time.monotonic() - started)
                    break
                except Conflict as e:
                    plan = self._rebase(decide, plan, e)
            else:
                raise Aborted(f"the mesh kept changing under this change ({REBASES} attempts); try again")
            if not plan.commit.is_empty():
                self.on_change()
            return plan.changes

    def _rebase(self, decide: Decide, plan: Plan, conflict: Conflict) -> Plan:
        """The plan on the newer state, when it commutes with what was committed first."""
        rebased = decide(self._state)
        # Nothing left to change: the state already is what this change asked for.
        if not rebased.changes and not rebased.commit.resources:
            return rebased
        if rebased.changes != plan.changes or rebased.commit != plan.commit:
            raise Aborted(f"another change was committed first ({conflict}); nothing of this change "
                          "was applied: read the mesh again and retry")
        log.info("rebased a change on the newer state (%s)", conflict)
        return rebased


def _nothing(state: MeshState) -> Plan:
    """Unregistering what another replica already removed: nothing to commit."""
    return Plan(state, [], Commit())
