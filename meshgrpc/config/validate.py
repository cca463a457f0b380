"""Semantic validation of a MeshConfig (work in progress; full rules follow)."""

from __future__ import annotations

from meshapi.v1 import resources_pb2
from meshgrpc.errors import ConfigError, FieldError


def validate_mesh(mesh: resources_pb2.MeshConfig, *, check_references: bool = True) -> list[FieldError]:
    return []


def check_mesh(mesh: resources_pb2.MeshConfig, *, check_references: bool = True) -> None:
    errors = validate_mesh(mesh, check_references=check_references)
    if errors:
        raise ConfigError(errors)


def referenced_clusters(route_config: resources_pb2.RouteConfig) -> set[str]:
    names: set[str] = set()
    for vhost in route_config.virtual_hosts:
        for route in vhost.routes:
            if route.route.cluster:
                names.add(route.route.cluster)
            names.update(w.name for w in route.route.weighted_clusters)
    return names
