"""A workload's certificate on a fake clock: joined once, renewed at half-life
with a new key, retried with backoff when the control plane fails, a refusal
logged as one; and the ssl contexts the data path holds present the renewed
certificate on the next handshake."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from cryptography import x509

from meshapi.v1 import management_pb2
from meshgrpc.grpcwire import status as st
from meshgrpc.identity.ca import CertificateAuthority
from meshgrpc.identity.issuer import IssueFailed
from meshgrpc.identity.workload import WorkloadIdentity, peer_spiffe_id
from tests.support.clock import FakeClock

LIFETIME = 30.0


class FakeControlPlane:
    """Signs CSRs with a real CA at the fake clock's time; `fail` queues failures."""

    def __init__(self, clock: FakeClock) -> None:
        self.ca = CertificateAuthority.create("mesh.local", clock())
        self.clock = clock
        self.asked: list[tuple[float, bool]] = []   # (when, with the current certificate)
        self.fail: list[int] = []   # gRPC status codes

    async def issue(self, csr: bytes, current) -> management_pb2.IssueCertificateResponse:
        self.asked.append((self.clock(), current is not None))
        if self.fail:
            raise IssueFailed(self.fail.pop(0), "no")
        issued = self.ca.issue_workload(csr, "greeter", LIFETIME, self.clock())
        response = management_pb2.IssueCertificateResponse(certificate_chain=issued.chain_pem,
                                                           ca_bundle=self.ca.bundle_pem, spiffe_id=issued.spiffe_id,
                                                           mtls_port=15012)
        response.not_after.FromNanoseconds(int(issued.not_after * 1e9))
        return response


def run_on(clock: FakeClock, body):
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)
    return asyncio.run(body(sleep))


def test_renews_at_half_life_with_a_new_key_each_time(tmp_path):
    clock = FakeClock(1_000_000.0)
    plane = FakeControlPlane(clock)

    async def body(sleep):
        identity = WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep, files_dir=str(tmp_path))
        first = await identity.join()
        identity.start()
        while identity.renewals < 3:
            await asyncio.sleep(0)
        await identity.stop()
        return first, identity
    first, identity = run_on(clock, body)
    assert identity.current.key_pem != first.key_pem and identity.current.chain_pem != first.chain_pem
    assert identity.current.spiffe_id == "spiffe://mesh.local/service/greeter"


def test_each_renewal_comes_half_way_through_the_new_certificate(tmp_path):
    clock = FakeClock(1_000_000.0)
    plane = FakeControlPlane(clock)

    async def body(sleep):
        identity = WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep, files_dir=str(tmp_path))
        await identity.join()
        identity.start()
        while identity.renewals < 3:
            await asyncio.sleep(0)
        await identity.stop()
    run_on(clock, body)
    # Every certificate lives 30 s from when it is issued: renewals come 15 s apart.
    assert [round(t - 1_000_000.0, 6) for t, _ in plane.asked] == [0, 15, 30, 45]
    assert [current for _, current in plane.asked] == [False, True, True, True]


def test_a_failed_renewal_is_retried_with_backoff_and_a_refusal_is_counted(tmp_path):
    clock = FakeClock(1_000_000.0)
    plane = FakeControlPlane(clock)

    async def body(sleep):
        identity = WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep, files_dir=str(tmp_path))
        await identity.join()
        plane.fail = [st.UNAVAILABLE, st.UNAUTHENTICATED]
        identity.start()
        while identity.renewals < 1:
            await asyncio.sleep(0)
        await identity.stop()
        return identity
    identity = run_on(clock, body)
    asked = [round(t - 1_000_000.0, 6) for t, _ in plane.asked]
    assert asked[:2] == [0, 15] and len(asked) == 4
    assert 15 < asked[2] <= 16 and asked[2] < asked[3] <= asked[2] + 2   # backoff: 1 s, then 2 s, jittered
    assert identity.failures == 2 and identity.last_error == "UNAUTHENTICATED: no"


def test_joining_is_refused_at_once_and_retried_while_unreachable(tmp_path):
    clock = FakeClock(1_000_000.0)
    plane = FakeControlPlane(clock)

    async def body(sleep):
        identity = WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep, files_dir=str(tmp_path))
        plane.fail = [st.UNAVAILABLE, st.UNAVAILABLE]
        await identity.join()
        plane.fail = [st.UNAUTHENTICATED]
        with pytest.raises(IssueFailed) as refused:
            await WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep,
                                   files_dir=str(tmp_path / "x")).join()
        return refused.value
    (tmp_path / "x").mkdir()
    refused = run_on(clock, body)
    assert refused.refused and len(plane.asked) == 4


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext):
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return client, server


def test_the_contexts_present_the_renewed_certificate_on_the_next_handshake(tmp_path):
    import time
    clock = FakeClock(time.time())   # real time: OpenSSL checks validity against the wall clock
    plane = FakeControlPlane(clock)

    async def body(sleep):
        identity = WorkloadIdentity("greeter", plane.issue, clock=clock, sleep=sleep, files_dir=str(tmp_path))
        await identity.join()
        server, client = identity.server_context(), identity.client_context()
        before = _handshake(client, server)
        identity._install(await identity._request(identity.current.held()))   # one renewal, by hand
        after = _handshake(client, server)
        return identity, before, after
    identity, (c1, s1), (c2, s2) = run_on(clock, body)
    assert c1.version() == "TLSv1.3" and c1.selected_alpn_protocol() == "h2"
    assert peer_spiffe_id(s1) == peer_spiffe_id(c1) == "spiffe://mesh.local/service/greeter"

    def serial(ssl_object) -> int:
        return x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True)).serial_number
    assert serial(c1) != serial(c2) and serial(s1) != serial(s2)
    assert serial(c2) == x509.load_pem_x509_certificates(identity.current.chain_pem)[0].serial_number
