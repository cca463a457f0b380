"""What a translation could not give proxyless clients: one line per config field
the mesh honours and gRPC's xDS client does not (or does otherwise), naming the
resource and the field and saying what the client gets instead. The lines are
shown per node in `meshgrpc status` and logged when first sent to a node, so
nothing is dropped quietly.
"""

from __future__ import annotations

class Gaps:
    """Collects the lines for one resource, e.g. `cluster greeter`."""

    __slots__ = ("resource", "lines")

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.lines: list[str] = []

    def add(self, field: str, text: str) -> None:
        self.lines.append(f"{self.resource}: {field}: {text}")

    def __repr__(self) -> str:
        return f"Gaps({self.resource!r}, {len(self.lines)} lines)"
