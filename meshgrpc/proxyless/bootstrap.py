"""`meshgrpc bootstrap`: the file GRPC_XDS_BOOTSTRAP names, telling an application's
gRPC library where its xDS server is and who it is (gRFC A27 "Bootstrap file").

    meshgrpc bootstrap --node-id app-1 --service frontend -o /etc/app/xds.json
    GRPC_XDS_BOOTSTRAP=/etc/app/xds.json python app.py   # dials xds:///greeter.mesh

Against a secure control plane the client authenticates with a workload
certificate of --service (its proxyless stream then carries only what that
service may see): this command gets one with its token (a join token for the
service, or an admin token; --token-file or MESHGRPC_TOKEN), writes the key,
chain and CA bundle into --cert-dir (0600), and names them in `channel_creds`
type "tls" (gRFC A65, mTLS credentials in the bootstrap file), pointed at the
control plane's mTLS port; gRPC re-reads the files every `refresh_interval`.
With --renew it keeps running and renews them at half-life, as a proxy does.
gRPC's bootstrap has no bearer-token credential, so a proxyless client cannot
use a token alone. `--insecure`: `channel_creds: insecure`, for a control plane
run with --insecure. `server_features: ["xds_v3"]` asks for the v3 API (gRFC
A30); current gRPC speaks only v3 and ignores it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile

from meshgrpc.addresses import split_targets
from meshgrpc.control_channel import CredentialError, credentials_from_args
from meshgrpc.identity.issuer import IssueFailed, Issuer, mtls_target
from meshgrpc.identity.joining import token_dialer
from meshgrpc.identity.private_files import write_private
from meshgrpc.identity.workload import WorkloadIdentity

REFRESH_INTERVAL = "60s"


def bootstrap(node_id: str, control_plane: str, zone: str = "", cert_dir: str = "") -> dict:
    """The bootstrap document for one node; with `cert_dir`, mTLS with the files there."""
    node: dict = {"id": node_id}
    if zone:
        node["locality"] = {"zone": zone}
    creds = [{"type": "insecure"}] if not cert_dir else [{"type": "tls", "config": {
        "ca_certificate_file": os.path.join(cert_dir, "ca.pem"),
        "certificate_file": os.path.join(cert_dir, "chain.pem"),
        "private_key_file": os.path.join(cert_dir, "key.pem"),
        "refresh_interval": REFRESH_INTERVAL}}]
    return {
        "xds_servers": [{"server_uri": control_plane, "channel_creds": creds, "server_features": ["xds_v3"]}],
        "node": node,
    }


def run(args: argparse.Namespace) -> int:
    if not args.node_id:
        print("meshgrpc bootstrap: --node-id must not be empty", file=sys.stderr)
        return 1
    try:
        targets = split_targets(args.control_plane)
        credentials = credentials_from_args(args)
    except (ValueError, CredentialError) as e:
        print(f"meshgrpc bootstrap: {e}", file=sys.stderr)
        return 2
    if credentials.insecure:
        return _write(args, bootstrap(args.node_id, targets[0], args.zone))
    if not args.service or not args.cert_dir:
        print("meshgrpc bootstrap: a secure control plane needs --service (the client's identity) and --cert-dir "
              "(where its certificate goes), or --insecure", file=sys.stderr)
        return 2
    return asyncio.run(_secure(args, targets))


async def _secure(args, targets: list[str]) -> int:
    os.makedirs(args.cert_dir, mode=0o700, exist_ok=True)
    identity = WorkloadIdentity(args.service, Issuer(args.control_plane, args.service, token_dialer(args)).issue,
                                files_dir=args.cert_dir)
    try:
        cert = await asyncio.wait_for(identity.join(), 30)
    except (IssueFailed, TimeoutError) as e:
        print(f"meshgrpc bootstrap: no certificate for {args.service}: {e or 'no answer within 30s'}", file=sys.stderr)
        return 1
    write_private(os.path.join(args.cert_dir, "ca.pem"), cert.ca_bundle)
    code = _write(args, bootstrap(args.node_id, mtls_target(targets[0], cert.mtls_port), args.zone, args.cert_dir))
    if code or not args.renew:
        return code
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    identity.start()
    try:
        await stop.wait()
    finally:
        await identity.stop()
    return 0


def _write(args, document: dict) -> int:
    text = json.dumps(document, indent=2) + "\n"
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
