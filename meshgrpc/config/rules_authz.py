"""Validation rules for authorization policies: names, the service judged, the
action, and each rule's callers (SPIFFE IDs), methods (paths) and header matchers.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.rules_common import Context, duplicates, join, name_problem
from meshgrpc.errors import FieldError
from meshgrpc.identity.spiffe import SCHEME

ANY = "*"


def unique_policy_names(mesh: pb.MeshConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from duplicates((p.name for p in mesh.authorization_policies),
                          lambda i: f"authorization_policies[{i}].name", "authorization policy name")


def policy_name(p: pb.AuthorizationPolicy, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := name_problem(p.name):
        yield FieldError(join(path, "name"), problem)


def policy_service(p: pb.AuthorizationPolicy, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := name_problem(p.service, "service"):
        yield FieldError(join(path, "service"), problem + " (the service whose inbound calls the policy judges)")


def policy_action(p: pb.AuthorizationPolicy, path: str, ctx: Context) -> Iterator[FieldError]:
    if p.action not in (pb.AuthorizationPolicy.ALLOW, pb.AuthorizationPolicy.DENY):
        yield FieldError(join(path, "action"), "required: ALLOW or DENY")


def policy_rules(p: pb.AuthorizationPolicy, path: str, ctx: Context) -> Iterator[FieldError]:
    if not p.rules:
        yield FieldError(join(path, "rules"), "at least one rule (a rule with no conditions matches every call)")


def rule_from(r: pb.AuthorizationRule, path: str, ctx: Context) -> Iterator[FieldError]:
    for i, identity in enumerate(getattr(r, "from")):
        if identity != ANY and not identity.startswith(SCHEME):
            yield FieldError(f"{join(path, 'from')}[{i}]", f"{identity!r}: a SPIFFE ID (spiffe://...), a prefix "
                                                          'of one ending in "*", or "*"')
        elif _inner_star(identity):
            yield FieldError(f"{join(path, 'from')}[{i}]", f'{identity!r}: "*" may only end a prefix')


def rule_to(r: pb.AuthorizationRule, path: str, ctx: Context) -> Iterator[FieldError]:
    for i, method in enumerate(r.to):
        if method != ANY and not method.startswith("/"):
            yield FieldError(f"{join(path, 'to')}[{i}]", f'{method!r}: a path ("/pkg.Service/Method"), a prefix '
                                                        'ending in "*", or "*"')
        elif _inner_star(method):
            yield FieldError(f"{join(path, 'to')}[{i}]", f'{method!r}: "*" may only end a prefix')


def _inner_star(pattern: str) -> bool:
    return pattern != ANY and "*" in pattern[:-1]
