"""gRPC status codes by name and number (grpc/grpc doc/statuscodes.md), without
importing grpcio: the proxy's data path and config specs use them too."""

from __future__ import annotations

CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
NAMES: dict[int, str] = {number: name for name, number in CODES.items()}


def parse(text: str) -> int | None:
    """A status given as a name ("UNAVAILABLE") or a number ("14"); None if it is neither."""
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if number in NAMES else None
    return CODES.get(text)


def name(number: int) -> str:
    return NAMES.get(number, str(number))
