"""The proxy answers Node's own http2 client (a third HTTP/2 stack beside grpcio
and h2load) correctly: a unary gRPC call through a real control plane, proxy and
backend, and an unrouted one failed by the proxy itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from meshtest.interop import messages_pb2
from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import REPO

NODE = shutil.which("node")
SCRIPT = os.path.join(REPO, "tests", "support", "node", "grpc_unary.js")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed: the Node http2 client case needs it")


def node_call(address: str, path: str, request: bytes) -> dict:
    out = subprocess.run([NODE, SCRIPT, address, path, request.hex()], capture_output=True, text=True,
                         timeout=30, check=False)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_node_http2_client_gets_grpc_answers_through_the_proxy(tmp_path):
    with Mesh(tmp_path) as mesh:
        backend = mesh.start_backend("a")
        mesh.start_control_plane(mesh_config({"svc": [backend]}, [route("/grpc.testing.", "svc")]))
        proxy = mesh.start_proxy()
        request = messages_pb2.SimpleRequest(response_size=7).SerializeToString()
        ok = node_call(proxy.address, "/grpc.testing.TestService/UnaryCall", request)
        assert (ok["status"], ok["grpcStatus"]) == (200, "0"), ok
        reply = messages_pb2.SimpleResponse.FromString(bytes.fromhex(ok["message"]))
        assert len(reply.payload.body) == 7 and reply.server_id == "a"
        unrouted = node_call(proxy.address, "/other.Service/Method", request)
        assert unrouted["grpcStatus"] == "12" and "no route" in unrouted["grpcMessage"], unrouted
