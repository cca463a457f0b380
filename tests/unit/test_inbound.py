"""The inbound side's pure parts: its fixed app state, authorization swapped on
config change with its decisions counted across swaps, refusal messages, and the
upstream identity check."""

from __future__ import annotations

import pytest

from meshgrpc.config.loader import parse_text
from meshgrpc.config.specs import authorization_policy_spec
from meshgrpc.errors import ConfigError
from meshgrpc.proxy.inbound import APP_CLUSTER, InboundAuthorization, app_state, denial_message
from meshgrpc.proxy.tls import Peer, UpstreamTls

FRONTEND = "spiffe://mesh.local/service/frontend"
BATCH = "spiffe://mesh.local/service/batch"
SAY = b"/helloworld.Greeter/SayHello"


def policies(dry_run: bool = False, service: str = "greeter"):
    mesh = parse_text(f"""
authorization_policies:
  - name: frontend-says
    service: {service}
    action: ALLOW
    dry_run: {str(dry_run).lower()}
    rules: [{{from: ["{FRONTEND}"], to: ["/helloworld.Greeter/SayHello"]}}]
""")
    return [authorization_policy_spec(p) for p in mesh.authorization_policies]


def test_app_state_routes_every_call_to_the_app_without_retries():
    state = app_state("127.0.0.1:8080")
    route = state.routes.route(b"anything", b"/any.Service/Method", [])
    assert route is not None and route.pick_cluster() == APP_CLUSTER
    assert route.action.retry is None
    assert [e.address for e in state.clusters.get(APP_CLUSTER).endpoints] == ["127.0.0.1:8080"]


def test_app_state_names_a_bad_address():
    with pytest.raises(ConfigError, match="not host:port"):
        app_state("nowhere")


def test_no_policy_allows_every_caller_and_counts_it_under_no_policy():
    authz = InboundAuthorization("greeter")
    assert authz.judge("", SAY, []).allowed
    assert authz.judge(BATCH, SAY, []).allowed
    assert authz.decisions() == {("", "allow"): 2}


def test_decisions_are_counted_across_policy_swaps():
    authz = InboundAuthorization("greeter")
    authz.judge(BATCH, SAY, [])
    authz.update(policies())
    assert not authz.judge(BATCH, SAY, []).allowed
    assert authz.judge(FRONTEND, SAY, []).allowed
    authz.update(policies(dry_run=True))
    assert authz.judge(BATCH, SAY, []).allowed
    assert authz.decisions() == {("", "allow"): 2, ("frontend-says", "allow"): 1, ("frontend-says", "deny"): 1,
                                 ("frontend-says", "would_deny"): 1}


def test_another_service_s_policies_do_not_apply():
    authz = InboundAuthorization("greeter")
    authz.update(policies(service="billing"))
    assert authz.current.policies == ()
    assert authz.judge(BATCH, SAY, []).allowed


def test_a_refusal_names_the_caller_the_method_and_the_policy():
    authz = InboundAuthorization("greeter")
    authz.update(policies())
    assert denial_message(authz.judge("", SAY, []), "", SAY) == (
        "a caller without a SPIFFE ID may not call /helloworld.Greeter/SayHello: "
        "denied by authorization policy frontend-says")


@pytest.mark.parametrize("peer, problem", [
    (Peer("spiffe://mesh.local/service/greeter", "TLSv1.3", "h2"), None),
    (Peer(BATCH, "TLSv1.3", "h2"), "peer identity mismatch: expected spiffe://mesh.local/service/greeter, "
                                   f"the endpoint presented {BATCH}"),
    (Peer("", "TLSv1.3", "h2"), "peer identity mismatch: expected spiffe://mesh.local/service/greeter, "
                                "the endpoint presented no SPIFFE ID"),
    (Peer("spiffe://mesh.local/service/greeter", "TLSv1.3", ""), "the endpoint did not negotiate ALPN h2 (got none)"),
])
def test_an_upstream_peer_must_be_the_cluster_s_identity_over_h2(peer, problem):
    assert UpstreamTls.problem(peer, "spiffe://mesh.local/service/greeter") == problem


def test_a_cluster_s_default_identity_is_its_service_in_the_proxy_s_trust_domain():
    tls = UpstreamTls(context=None, own_spiffe_id="spiffe://corp.example/service/frontend")
    assert tls.expected("greeter", "") == "spiffe://corp.example/service/greeter"
    assert tls.expected("greeter", "spiffe://other/x") == "spiffe://other/x"
