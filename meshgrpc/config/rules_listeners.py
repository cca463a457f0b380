"""Validation rules for listeners, the targets proxyless gRPC clients dial: names
(unique, the `xds:///NAME` a client opens) and the route config each one uses.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.rules_common import Context, duplicates, join, name_problem
from meshgrpc.errors import FieldError


def unique_listener_names(mesh: pb.MeshConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from duplicates((l.name for l in mesh.listeners), lambda i: f"listeners[{i}].name", "listener name")


def listener_name(l: pb.Listener, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := name_problem(l.name):
        yield FieldError(join(path, "name"), problem)


def listener_route_config(l: pb.Listener, path: str, ctx: Context) -> Iterator[FieldError]:
    here = join(path, "route_config")
    if not l.route_config:
        yield FieldError(here, "route_config is required: the route config whose routes this target follows")
    elif ctx.route_configs is not None and l.route_config not in ctx.route_configs:
        yield FieldError(here, f'route config "{l.route_config}" does not exist')
