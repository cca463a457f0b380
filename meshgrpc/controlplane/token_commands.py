"""`meshgrpc token create|revoke|list`: the control plane's tokens, admin only.

    meshgrpc token create --service greeter [--ttl 24h]   # a join token, printed once
    meshgrpc token create --role read                     # an operator's read-only token
    meshgrpc token revoke 3f2a9c0d1b2e
    meshgrpc token list
"""

from __future__ import annotations

import datetime

from google.protobuf import duration_pb2

from meshapi.v1 import management_pb2
from meshgrpc.controlplane.commands import DEADLINE, _command


@_command
def create(args, stub) -> int:
    request = management_pb2.CreateTokenRequest(role=args.role or "", service=args.service or "")
    if args.ttl is not None:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(args.ttl), nanos=int(args.ttl % 1 * 1e9)))
    response = stub.CreateToken(request, timeout=DEADLINE)
    print(response.secret)
    print(f"# {_describe(response.token)}")
    return 0


@_command
def revoke(args, stub) -> int:
    response = stub.RevokeToken(management_pb2.RevokeTokenRequest(id=args.id), timeout=DEADLINE)
    print(f"revoked {_describe(response.token)}")
    return 0


@_command
def list(args, stub) -> int:  # noqa: A001 - the subcommand's name
    response = stub.ListTokens(management_pb2.ListTokensRequest(), timeout=DEADLINE)
    rows = [("ID", "ROLE", "SERVICE", "CREATED", "EXPIRES", "STATE")]
    for t in response.tokens:
        rows.append((t.id, t.role, t.service or "-", _time(t.created), _time(t.expires) if t.HasField("expires")
                     else "never", "revoked" if t.revoked else "live"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _describe(token: management_pb2.Token) -> str:
    what = f"join token {token.id} for service {token.service}" if token.role == "join" else \
        f"{token.role} token {token.id}"
    expiry = f", expires {_time(token.expires)}" if token.HasField("expires") else ", never expires"
    return what + expiry


def _time(ts) -> str:
    return ts.ToDatetime(tzinfo=datetime.timezone.utc).isoformat(timespec="seconds")
