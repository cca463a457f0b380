"""The control plane's serving TLS (controlplane/trust.py): a context per port,
the serving certificate re-issued at half-life and given to the next handshake,
no key material left on disk. The server calls renew_if_due() at each accept,
before the handshake (grpcwire.Server.bind's before_handshake), as here."""

from __future__ import annotations

import asyncio
import os
import ssl
import time

from meshgrpc.controlplane.trust import SERVER_CERT_LIFETIME, Trust, TrustSettings


def _served_certificate(trust: Trust, context: ssl.SSLContext, verify: bool = True) -> bytes:
    """The certificate a client sees, accepted as the control plane accepts (renewal first)."""
    ca_pem = trust.ca.bundle_pem

    async def main() -> bytes:
        def accepted():
            trust.renew_if_due()
            return asyncio.Protocol()
        server = await asyncio.get_running_loop().create_server(accepted, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client = ssl.create_default_context(cadata=ca_pem.decode())
        if not verify:   # a certificate issued at a fake future time is not valid yet
            client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        client.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.selected_alpn_protocol() == "h2"
        der = ssl_object.getpeercert(binary_form=True)
        writer.close()
        server.close()
        await server.wait_closed()
        return der
    return asyncio.run(main())


def test_the_serving_certificate_is_renewed_at_half_life_for_the_next_handshake(tmp_path):
    now = [time.time()]
    data = tmp_path / "data"
    trust = Trust.open(TrustSettings(str(data), "mesh.local", 3600.0), clock=lambda: now[0])
    context = trust.server_ssl_context(require_client_certificate=False)
    first = _served_certificate(trust, context)
    assert _served_certificate(trust, context) == first
    now[0] += SERVER_CERT_LIFETIME / 2 + 1
    renewed = _served_certificate(trust, context, verify=False)
    assert renewed != first
    assert _served_certificate(trust, context, verify=False) == renewed
    assert sorted(os.listdir(data)) == ["admin.token", "ca.key", "ca.pem", "tokens.json"]   # no pair left behind


def test_the_mtls_port_requires_a_certificate_from_the_mesh_ca(tmp_path):
    trust = Trust.open(TrustSettings(str(tmp_path / "data"), "mesh.local", 3600.0))
    assert trust.server_ssl_context(require_client_certificate=True).verify_mode == ssl.CERT_REQUIRED
    assert trust.server_ssl_context(require_client_certificate=False).verify_mode == ssl.CERT_NONE
