"""The authorizer, by table: DENY first, then ALLOW-if-any-exists, dry runs only
counted; callers, methods and headers each as exact, prefix and "*"."""

from __future__ import annotations

import sys
import tracemalloc

import pytest

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.authz import authorizer
from meshgrpc.config.loader import parse_text
from meshgrpc.config.specs import authorization_policy_spec

FRONTEND = "spiffe://mesh.local/service/frontend"
BATCH = "spiffe://mesh.local/service/batch"
SAY = b"/helloworld.Greeter/SayHello"
OTHER = b"/helloworld.Greeter/SayGoodbye"


def compiled(yaml: str, service: str = "greeter") -> authorizer.Authorizer:
    mesh = parse_text(yaml)
    return authorizer.compile([authorization_policy_spec(p) for p in mesh.authorization_policies], service)


ALLOW_FRONTEND_SAY = """
authorization_policies:
  - name: frontend-says
    service: greeter
    action: ALLOW
    rules: [{from: ["spiffe://mesh.local/service/frontend"], to: ["/helloworld.Greeter/SayHello"]}]
"""


@pytest.mark.parametrize("identity, path, allowed, by", [
    (FRONTEND, SAY, True, "frontend-says"),
    (BATCH, SAY, False, "frontend-says"),       # no ALLOW policy matched: refused, naming the ALLOW policies
    (FRONTEND, OTHER, False, "frontend-says"),
    ("", SAY, False, "frontend-says"),          # no identity
])
def test_an_allow_policy_lets_only_its_matches_through(identity, path, allowed, by):
    decision = compiled(ALLOW_FRONTEND_SAY).authorize(identity, path, [])
    assert (decision.allowed, decision.policy_name, decision.would_deny) == (allowed, by, "")


def test_no_policy_for_the_service_allows_everything():
    decision = compiled(ALLOW_FRONTEND_SAY, service="billing").authorize(BATCH, SAY, [])
    assert (decision.allowed, decision.policy_name) == (True, "")


BOTH = ALLOW_FRONTEND_SAY + """
  - name: no-canary
    service: greeter
    action: DENY
    rules: [{when: [{name: x-canary, exact: "true"}]}]
  - name: any-prefix
    service: greeter
    action: ALLOW
    rules: [{from: ["spiffe://mesh.local/service/ba*"], to: ["/helloworld.Greeter/*"]}]
"""


@pytest.mark.parametrize("identity, path, headers, allowed, by", [
    (FRONTEND, SAY, [], True, "frontend-says"),
    (FRONTEND, SAY, [(b"x-canary", b"true")], False, "no-canary"),      # DENY wins over a matching ALLOW
    (BATCH, OTHER, [], True, "any-prefix"),                              # prefix caller, prefix method
    (BATCH, OTHER, [(b"x-canary", b"false")], True, "any-prefix"),
    ("spiffe://mesh.local/service/web", SAY, [], False, "any-prefix,frontend-says"),
    (BATCH, b"/other.Service/Call", [], False, "any-prefix,frontend-says"),
])
def test_deny_comes_first_then_any_allow(identity, path, headers, allowed, by):
    decision = compiled(BOTH).authorize(identity, path, headers)
    assert (decision.allowed, decision.policy_name) == (allowed, by)


def test_star_callers_include_the_unauthenticated_but_prefixes_do_not():
    authz = compiled("""
authorization_policies:
  - {name: open, service: greeter, action: ALLOW, rules: [{from: ["*"], to: ["/public/*"]}]}
  - {name: mesh, service: greeter, action: ALLOW, rules: [{from: ["spiffe://*"]}]}
""")
    assert authz.authorize("", b"/public/x", []).allowed
    assert not authz.authorize("", b"/private/x", []).allowed
    assert authz.authorize(BATCH, b"/private/x", []).policy_name == "mesh"


DRY = """
authorization_policies:
  - name: frontend-only
    service: greeter
    action: ALLOW
    dry_run: true
    rules: [{from: ["spiffe://mesh.local/service/frontend"]}]
"""


@pytest.mark.parametrize("identity, would_deny", [(FRONTEND, ""), (BATCH, "frontend-only")])
def test_a_dry_run_policy_lets_calls_pass_and_names_itself_when_it_would_deny(identity, would_deny):
    decision = compiled(DRY).authorize(identity, SAY, [])
    assert (decision.allowed, decision.policy_name, decision.would_deny) == (True, "", would_deny)


def test_a_dry_run_deny_beside_an_enforced_allow():
    authz = compiled(ALLOW_FRONTEND_SAY + """
  - {name: shadow-deny, service: greeter, action: DENY, dry_run: true, rules: [{to: ["/helloworld.Greeter/SayHello"]}]}
""")
    decision = authz.authorize(FRONTEND, SAY, [])
    assert (decision.allowed, decision.policy_name, decision.would_deny) == (True, "frontend-says", "shadow-deny")
    refused = authz.authorize(BATCH, SAY, [])      # really refused: not a would-deny
    assert (refused.allowed, refused.would_deny) == (False, "")


def test_authorize_allocates_nothing_per_call():
    authz = compiled(BOTH + DRY.split("authorization_policies:\n")[1])
    calls = [(FRONTEND, SAY, []), (BATCH, OTHER, [(b"x-canary", b"true")]), ("", SAY, []), (BATCH, SAY, [])]
    for args in calls:
        authz.authorize(*args)   # warm
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(1000):
        for args in calls:
            authz.authorize(*args)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename")
                if s.traceback[0].filename.endswith("authorizer.py"))
    assert grown <= 0, f"authorize allocated {grown} bytes in 4000 calls"


@pytest.mark.parametrize("yaml, errors", [
    ("authorization_policies: [{name: p, service: greeter, rules: [{}]}]",
     ["authorization_policies[0].action: required: ALLOW or DENY"]),
    ("authorization_policies: [{name: p, service: greeter, action: ALLOW}]",
     ["authorization_policies[0].rules: at least one rule (a rule with no conditions matches every call)"]),
    ("authorization_policies: [{name: p, action: DENY, rules: [{}]}]",
     ["authorization_policies[0].service: service is required (the service whose inbound calls the policy judges)"]),
    ("authorization_policies: [{name: p, service: g, action: DENY, rules: [{from: [frontend], to: [SayHello]}]}]",
     ["authorization_policies[0].rules[0].from[0]: 'frontend': a SPIFFE ID (spiffe://...), a prefix of one ending in \"*\", or \"*\"",
      "authorization_policies[0].rules[0].to[0]: 'SayHello': a path (\"/pkg.Service/Method\"), a prefix ending in \"*\", or \"*\""]),
    ("authorization_policies: [{name: p, service: g, action: DENY, rules: [{to: ['/a*b']}]}]",
     ["authorization_policies[0].rules[0].to[0]: '/a*b': \"*\" may only end a prefix"]),
    ("authorization_policies: [{name: p, service: g, action: DENY, rules: [{when: [{name: x-a}]}]}]",
     ["authorization_policies[0].rules[0].when[0]: set exactly one of exact, prefix, suffix, regex, present"]),
    ("authorization_policies: [{name: p, service: g, action: DENY, rules: [{}]}, {name: p, service: g, action: DENY, rules: [{}]}]",
     ["authorization_policies[1].name: duplicate authorization policy name \"p\" (also at authorization_policies[0].name)"]),
])
def test_invalid_policies_name_their_field(yaml, errors):
    from meshgrpc.config.validate import validate_mesh
    found = [str(e) for e in validate_mesh(parse_text(yaml))]
    assert found == errors
