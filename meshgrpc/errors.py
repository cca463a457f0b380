"""meshgrpc's error types. Each carries the gRPC status it maps to, so a servicer
turns any of them into a status with a message that says why, in one place."""

from __future__ import annotations

import dataclasses

import grpc


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One broken rule at one place in a config, e.g.
    `clusters[2].outlier_detection.max_ejection_percent: 150 must be <= 100`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class MeshError(Exception):
    """Base of meshgrpc's errors; `code` is the gRPC status it is reported with."""

    code = grpc.StatusCode.INTERNAL


class ConfigError(MeshError):
    """Config that breaks one or more rules; carries every error found, not just the first."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, errors: list[FieldError] | list[str], source: str = "") -> None:
        self.errors = [e if isinstance(e, FieldError) else FieldError("", e) for e in errors]
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(self.errors)} error(s):\n" + "\n".join(f"  {e}" for e in self.errors))


class LimitExceeded(ConfigError):
    """Input past a bound on parsing (file size, nesting depth, alias expansion):
    refused before its content is judged. Commands exit 2 for it, not 1."""


class NotFound(MeshError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(MeshError):
    """The request is well formed but the mesh's state refuses it (e.g. deleting a
    cluster a route still uses)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(MeshError):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(MeshError):
    """The call carries no credential the control plane accepts."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MeshError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(MeshError):
    """A bound the server keeps was reached (e.g. how many proxies may report load)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
