"""Authorization policies as the inbound side acts on them (resources.proto says
what each field means): typed, frozen, compared by value."""

from __future__ import annotations

import dataclasses

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.specs.routes import HeaderMatcherSpec, header_matcher_spec


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationRuleSpec:
    callers: tuple[str, ...] = ()     # `from`: empty = any caller
    methods: tuple[str, ...] = ()     # `to`: empty = any method
    headers: tuple[HeaderMatcherSpec, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationPolicySpec:
    name: str
    service: str
    action: str                       # "ALLOW" or "DENY"
    rules: tuple[AuthorizationRuleSpec, ...]
    dry_run: bool = False


def authorization_policy_spec(p: pb.AuthorizationPolicy) -> AuthorizationPolicySpec:
    rules = tuple(AuthorizationRuleSpec(tuple(getattr(r, "from")), tuple(r.to),
                                        tuple(header_matcher_spec(h) for h in r.when)) for r in p.rules)
    return AuthorizationPolicySpec(p.name, p.service, pb.AuthorizationPolicy.Action.Name(p.action), rules,
                                   p.dry_run)
