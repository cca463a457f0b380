"""How `meshgrpc status` shows proxyless gRPC clients: a table of their own (one
column per Envoy type), then what each one's config asks that it cannot do."""

from __future__ import annotations

from meshapi.v1 import management_pb2
from meshgrpc.proxyless.envoy_types import ENVOY_TYPES, SHORT_NAME

COLUMNS = {t: SHORT_NAME[t] for t in ENVOY_TYPES}


def is_proxyless(status: management_pb2.ProxyStatus) -> bool:
    return any(t.type_url in COLUMNS for t in status.types)


def unsupported_text(statuses) -> str:
    """Per node with any, its gap lines, indented under the node id."""
    out = []
    for status in sorted(statuses, key=lambda s: s.node_id):
        if status.unsupported:
            out.append(f"{status.node_id}: not available to this proxyless client:\n")
            out.extend(f"  {line}\n" for line in status.unsupported)
    return "".join(out)
