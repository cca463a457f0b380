"""The 14 standard gRPC interop client cases with the client pointed at a real
`meshgrpc proxy` (driven by a real control plane) in front of the interop
TestService: the proxy is transparent to everything the cases check."""

from __future__ import annotations

import pytest

from tests.support.interop_cases import ALL_CASES
from tests.support.mesh import Mesh, mesh_config, route
from tests.support.procs import poll_until


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with Mesh(tmp_path_factory.mktemp("interop")) as mesh:
        backend = mesh.start_backend("interop-1")
        mesh.start_control_plane(mesh_config({"interop": [backend]}, [route("/", "interop")]))
        yield mesh.start_proxy("interop-proxy")


def test_all_fourteen_cases_are_listed():
    assert len(ALL_CASES) == 14


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_interop_case_through_the_proxy(proxy, case):
    before = proxy.metric("meshgrpc_proxy_calls_total", route="to-interop")
    with proxy.channel() as channel:
        ALL_CASES[case](channel)
    # Calls cancelled at once or with a 1 ms deadline may end before they leave the client.
    if case not in ("cancel_after_begin", "timeout_on_sleeping_server"):
        # The calls really went through the proxy (its outcome is recorded as the call ends there).
        poll_until(lambda: proxy.metric("meshgrpc_proxy_calls_total", route="to-interop") > before, 5,
                   f"the proxy counted the calls of {case}")
