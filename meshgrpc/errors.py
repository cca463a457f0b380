"""meshgrpc's error types. Each carries the gRPC status it maps to, so a servicer
turns any of them into a status with a message that says why, in one place.

The proxy raises these too (config validation) but never reports them through
grpcio, and must not import it: `code` is looked up in grpc.StatusCode only when
read, which only the control plane's servicers do."""

from __future__ import annotations

import dataclasses


class _Status:
    """A class attribute reading as grpc.StatusCode.<name>, importing grpcio on first read."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner):
        import grpc   # here, not at the top: see the module doc

        return getattr(grpc.StatusCode, self.name)


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

    code = _Status("INTERNAL")


class ConfigError(MeshError):
    """Config that breaks one or more rules; carries every error found, not just the first."""

    code = _Status("INVALID_ARGUMENT")

    def __init__(self, errors: list[FieldError] | list[str], source: str = "") -> None:
        self.errors = [e if isinstance(e, FieldError) else FieldError("", e) for e in errors]
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(self.errors)} error(s):\n" + "\n".join(f"  {e}" for e in self.errors))


class LimitExceeded(ConfigError):
    """Input past a bound on parsing (file size, nesting depth, alias expansion):
    refused before its content is judged. Commands exit 2 for it, not 1."""


class NotFound(MeshError):
    code = _Status("NOT_FOUND")


class FailedPrecondition(MeshError):
    """The request is well formed but the mesh's state refuses it (e.g. deleting a
    cluster a route still uses)."""

    code = _Status("FAILED_PRECONDITION")


class Unavailable(MeshError):
    code = _Status("UNAVAILABLE")


class Unauthenticated(MeshError):
    """The call carries no credential the control plane accepts."""

    code = _Status("UNAUTHENTICATED")


class PermissionDenied(MeshError):
    """The caller is known but may not do this."""

    code = _Status("PERMISSION_DENIED")


class ResourceExhausted(MeshError):
    """A bound the server keeps was reached (e.g. how many proxies may report load)."""

    code = _Status("RESOURCE_EXHAUSTED")
