"""The mesh as the control plane holds it, and the pure decisions that change it.

`MeshState` is immutable: configured resources (from files and `apply`) plus the
endpoints registered by live service instances. `served()` merges the two into
the MeshConfig that proxies receive. Every change is planned by a pure function
(`plan_apply`, `plan_delete`, `plan_register`, `plan_unregister`) that validates
the whole resulting mesh and returns a `Plan`: the new state, what changed (with
a unified diff) and the `Commit` that makes it durable. Nothing is changed here;
the controller commits the plan, then swaps the state reference.

Decisions:
- Deleting a cluster also removes its configured endpoint set and its
  registrations (an endpoint set without its cluster is invalid); it is refused
  while a route uses the cluster.
- A registered endpoint whose address is also configured for the same cluster
  wins: the served set holds the registered one only.
- `apply` with replace=False changes only the resources it names; replace=True
  makes the given config the whole configured mesh (registrations stay, except
  for clusters that disappear).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Mapping

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from meshapi.v1 import management_pb2, resources_pb2
from meshgrpc.config import resources
from meshgrpc.config.loader import dump
from meshgrpc.config.validate import check_mesh, referenced_clusters, validate_mesh
from meshgrpc.controlplane.store import Commit, Stored
from meshgrpc.errors import ConfigError, FailedPrecondition, FieldError, NotFound

Resources = Mapping[str, Mapping[str, Message]]              # type_url -> name -> resource
Registrations = Mapping[str, Mapping[str, management_pb2.Instance]]  # cluster -> address -> instance


@dataclasses.dataclass(frozen=True)
class MeshState:
    """Configured resources and registered endpoints. Never mutated: plans build new ones."""

    configured: Resources
    registrations: Registrations
    # Versions the store derives from its revisions (etcd), per type URL; None when
    # the publisher numbers versions itself (SQLite).
    versions: Mapping[str, str] | None = None
    # The store's commit point this state was read at (etcd: the mod revision of
    # the key every configuration commit writes; 0 for SQLite).
    revision: int = 0
    # False while the store holds a change without its version yet (etcd: a lease
    # expired and no replica has bumped the endpoints version yet): not served.
    settled: bool = True

    @classmethod
    def empty(cls) -> MeshState:
        return cls({t: {} for t in resources.MESH_TYPES}, {})

    @classmethod
    def from_stored(cls, stored: Stored) -> MeshState:
        configured: dict[str, dict[str, Message]] = {t: {} for t in resources.MESH_TYPES}
        for (type_url, name), message in stored.resources.items():
            configured[type_url][name] = message
        registrations: dict[str, dict[str, management_pb2.Instance]] = {}
        for (cluster, address), instance in stored.registrations.items():
            registrations.setdefault(cluster, {})[address] = instance
        return cls(configured, registrations)

    def configured_mesh(self) -> resources_pb2.MeshConfig:
        """The configured resources only, sorted by name."""
        return mesh_of({t: self.configured[t] for t in resources.MESH_TYPES})

    def served(self) -> resources_pb2.MeshConfig:
        """What proxies receive: configured resources with registered endpoints merged in."""
        return mesh_of(self.served_resources())

    def served_resources(self) -> dict[str, dict[str, Message]]:
        clusters = self.configured[resources.CLUSTER]
        endpoint_sets = dict(self.configured[resources.ENDPOINTS])
        for cluster, instances in self.registrations.items():
            if cluster in clusters and instances:
                endpoint_sets[cluster] = _merge(cluster, endpoint_sets.get(cluster), instances)
        return {resources.CLUSTER: dict(clusters), resources.ENDPOINTS: endpoint_sets,
                resources.ROUTES: dict(self.configured[resources.ROUTES]),
                resources.LISTENER: dict(self.configured[resources.LISTENER]),
                resources.AUTHZ: dict(self.configured[resources.AUTHZ])}

    def registration_count(self) -> int:
        return sum(len(v) for v in self.registrations.values())


@dataclasses.dataclass(frozen=True)
class Plan:
    """A decided change: the state after it, what changed, and what to commit."""

    state: MeshState
    changes: list[management_pb2.ResourceChange]
    commit: Commit


# --- apply and delete -----------------------------------------------------------

def plan_apply(state: MeshState, incoming: resources_pb2.MeshConfig, replace: bool) -> Plan:
    """Merges (or, with replace, substitutes) `incoming` into the configured mesh.

    Raises ConfigError with every error of the resulting mesh; error paths index
    into `incoming` because its resources come first, in their own order, in the
    mesh that is validated. A merge judges the resources kept by the mesh-wide
    rules only (validate_mesh's `first`: they were valid when committed, and a
    merge removes nothing they could refer to); a replace judges everything.
    """
    candidate = resources_pb2.MeshConfig()
    applied: dict[str, int] = {}
    for type_url in resources.MESH_TYPES:
        field = resources.MESH_FIELD[type_url]
        given = list(getattr(incoming, field))
        kept = [] if replace else _without(state.configured[type_url], {resources.resource_name(r) for r in given})
        getattr(candidate, field).extend(given + kept)
        applied[field] = len(given)
    check_mesh(candidate, first=None if replace else applied)
    configured = {t: resources.by_name(candidate, t) for t in resources.MESH_TYPES}
    return _plan(state, configured)


def plan_delete(state: MeshState, type_url: str, name: str) -> Plan:
    """Removes one configured resource. Deleting a cluster takes its endpoint set
    and registrations with it and is refused while a route uses it."""
    current = state.configured[type_url]
    if name not in current:
        raise NotFound(f"{_label(type_url)} {name!r} not found")
    configured = {t: dict(v) for t, v in state.configured.items()}
    del configured[type_url][name]
    if type_url == resources.CLUSTER:
        _refuse_if_used(name, "cluster", "route config(s)",
                        [r for r, rc in configured[resources.ROUTES].items() if name in referenced_clusters(rc)])
        configured[resources.ENDPOINTS].pop(name, None)
    if type_url == resources.ROUTES:
        _refuse_if_used(name, "route config", "listener(s)",
                        [n for n, l in configured[resources.LISTENER].items() if l.route_config == name])
    check_mesh(mesh_of(configured))
    return _plan(state, configured)


def _refuse_if_used(name: str, what: str, users_kind: str, users: list[str]) -> None:
    if users:
        raise FailedPrecondition(f"{what} {name!r} is used by {users_kind} {', '.join(sorted(users))}; "
                                 "change or delete those first")


def _plan(state: MeshState, configured: dict[str, dict[str, Message]]) -> Plan:
    """The plan that takes `state` to `configured`, dropping registrations of clusters that go."""
    registrations = {c: v for c, v in state.registrations.items() if c in configured[resources.CLUSTER]}
    dropped = {(c, a): None for c, v in state.registrations.items() if c not in registrations for a in v}
    changes, writes = diff_resources(state.configured, configured)
    after = dataclasses.replace(state, configured=configured, registrations=registrations)
    return Plan(after, changes, Commit(resources=writes, registrations=dropped))


def diff_resources(before: Resources, after: Resources) -> tuple[list[management_pb2.ResourceChange], dict]:
    """The ResourceChanges (with unified YAML diffs) and store writes from `before` to `after`."""
    changes: list[management_pb2.ResourceChange] = []
    writes: dict[tuple[str, str], Message | None] = {}
    for type_url in resources.MESH_TYPES:
        old, new = before.get(type_url, {}), after.get(type_url, {})
        for name in sorted(old.keys() | new.keys()):
            a, b = old.get(name), new.get(name)
            if a == b:
                continue
            writes[(type_url, name)] = b
            changes.append(_change(type_url, name, a, b))
    return changes, writes


def _change(type_url: str, name: str, before: Message | None, after: Message | None) -> management_pb2.ResourceChange:
    action = (management_pb2.ResourceChange.ADDED if before is None
              else management_pb2.ResourceChange.REMOVED if after is None
              else management_pb2.ResourceChange.MODIFIED)
    path = f"{resources.SHORT_NAME[type_url]}/{name}"
    diff = difflib.unified_diff(
        _yaml_lines(before), _yaml_lines(after),
        fromfile="/dev/null" if before is None else f"a/{path}",
        tofile="/dev/null" if after is None else f"b/{path}")
    return management_pb2.ResourceChange(kind=resources.KIND[type_url], name=name, action=action, diff="".join(diff))


def _yaml_lines(message: Message | None) -> list[str]:
    if message is None:
        return []
    text = dump(message, "yaml")
    return [line + "\n" for line in text.splitlines()]


# --- registrations --------------------------------------------------------------

def plan_register(state: MeshState, instance: management_pb2.Instance, lease: int = 0) -> Plan:
    """Adds (or refreshes) a registered endpoint, held by `lease`; its cluster must exist."""
    if not instance.cluster:
        raise ConfigError([FieldError("instance.cluster", "required")])
    if instance.cluster not in state.configured[resources.CLUSTER]:
        raise FailedPrecondition(f"cluster {instance.cluster!r} does not exist; "
                                 "apply it before registering instances")
    _check_instance(instance)
    registrations = dict(state.registrations)
    registrations[instance.cluster] = {**registrations.get(instance.cluster, {}), instance.address: instance}
    commit = Commit(registrations={(instance.cluster, instance.address): instance}, lease=lease)
    return Plan(dataclasses.replace(state, registrations=registrations), [], commit)


def plan_unregister(state: MeshState, cluster: str, address: str) -> Plan | None:
    """Removes a registered endpoint; None when it is not registered."""
    if address not in state.registrations.get(cluster, {}):
        return None
    registrations = dict(state.registrations)
    remaining = {a: i for a, i in registrations[cluster].items() if a != address}
    if remaining:
        registrations[cluster] = remaining
    else:
        del registrations[cluster]
    return Plan(dataclasses.replace(state, registrations=registrations), [], Commit(registrations={(cluster, address): None}))


def endpoint_of(instance: management_pb2.Instance) -> resources_pb2.Endpoint:
    endpoint = resources_pb2.Endpoint(address=instance.address, zone=instance.zone)
    if instance.weight:  # 0 means unset: the endpoint's default weight
        endpoint.weight.CopyFrom(wrappers_pb2.UInt32Value(value=instance.weight))
    endpoint.metadata.update(instance.metadata)
    return endpoint


def _check_instance(instance: management_pb2.Instance) -> None:
    """Validates the instance with the one validator, as a one-endpoint mesh."""
    mesh = resources_pb2.MeshConfig(
        clusters=[resources_pb2.Cluster(name=instance.cluster)],
        endpoints=[resources_pb2.EndpointSet(cluster=instance.cluster, endpoints=[endpoint_of(instance)])])
    prefix = "endpoints[0].endpoints[0]"
    errors = [FieldError("instance" + e.path[len(prefix):], e.message) if e.path.startswith(prefix) else e
              for e in validate_mesh(mesh)]
    if not instance.address:
        errors.insert(0, FieldError("instance.address", "required"))
    if errors:
        raise ConfigError(errors)


# --- helpers --------------------------------------------------------------------

def _merge(cluster: str, configured: resources_pb2.EndpointSet | None,
           instances: Mapping[str, management_pb2.Instance]) -> resources_pb2.EndpointSet:
    """Configured endpoints (in their order) then registered ones by address; a
    registration replaces a configured endpoint with the same address."""
    merged = resources_pb2.EndpointSet(cluster=cluster)
    if configured is not None:
        merged.endpoints.extend(e for e in configured.endpoints if e.address not in instances)
    merged.endpoints.extend(endpoint_of(instances[a]) for a in sorted(instances))
    return merged


def _without(current: Mapping[str, Message], names: set[str]) -> list[Message]:
    return [current[n] for n in sorted(current) if n not in names]


def mesh_of(by_type: Mapping[str, Mapping[str, Message]]) -> resources_pb2.MeshConfig:
    mesh = resources_pb2.MeshConfig()
    for type_url in resources.MESH_TYPES:
        items = by_type.get(type_url, {})
        getattr(mesh, resources.MESH_FIELD[type_url]).extend(items[n] for n in sorted(items))
    return mesh


def _label(type_url: str) -> str:
    return {resources.CLUSTER: "cluster", resources.ENDPOINTS: "endpoint set", resources.ROUTES: "route config",
            resources.LISTENER: "listener", resources.AUTHZ: "authorization policy"}[type_url]


def filter_mesh(mesh: resources_pb2.MeshConfig, type_url: str | None, name: str) -> resources_pb2.MeshConfig:
    """The part of `mesh` of one type (None: all) and, if `name`, of that name only."""
    out = resources_pb2.MeshConfig()
    for t in resources.MESH_TYPES:
        if type_url is not None and t != type_url:
            continue
        items = [r for r in getattr(mesh, resources.MESH_FIELD[t]) if not name or resources.resource_name(r) == name]
        getattr(out, resources.MESH_FIELD[t]).extend(items)
    return out
