"""`meshgrpc bootstrap`: the file GRPC_XDS_BOOTSTRAP names, telling an application's
gRPC library where its xDS server is and who it is (gRFC A27 "Bootstrap file").

    meshgrpc bootstrap --node-id app-1 --zone a -o /etc/app/xds.json
    GRPC_XDS_BOOTSTRAP=/etc/app/xds.json python app.py   # dials xds:///greeter.mesh

The control plane is reached without TLS (`channel_creds: insecure`) until the
mesh's security lands. `server_features: ["xds_v3"]` asks for the v3 API
(gRFC A30); current gRPC speaks only v3 and ignores it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def bootstrap(node_id: str, control_plane: str, zone: str = "") -> dict:
    """The bootstrap document for one node."""
    node: dict = {"id": node_id}
    if zone:
        node["locality"] = {"zone": zone}
    return {
        "xds_servers": [{"server_uri": control_plane, "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": node,
    }


def run(args: argparse.Namespace) -> int:
    if not args.node_id:
        print("meshgrpc bootstrap: --node-id must not be empty", file=sys.stderr)
        return 1
    text = json.dumps(bootstrap(args.node_id, args.control_plane, args.zone), indent=2) + "\n"
    if args.output in ("", "-"):
        sys.stdout.write(text)
        return 0
    try:
        _write_atomically(args.output, text)
    except OSError as e:
        print(f"meshgrpc bootstrap: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


def _write_atomically(path: str, text: str) -> None:
    # A client starting while the file is rewritten must read the old or the new one, whole.
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".bootstrap-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
