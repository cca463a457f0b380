"""The compiled authorization of one service's inbound calls: a pure function of
(the caller's verified SPIFFE ID, the call's :path, its request headers) to a
Decision, run once per call on the event loop thread. Everything is compiled when
config changes (`compile`): caller and method sets and prefixes, header matchers
(the router's, so headers match as routes match them), and every Decision the
evaluator can return, so a call allocates nothing.

Semantics (resources.proto, AuthorizationPolicy; the same order as Envoy's RBAC
with a DENY then an ALLOW filter, and Istio's AuthorizationPolicy):
1. DENY policies first: a call matching any rule of one is refused by it;
2. then, if the service has any ALLOW policy, a call must match a rule of one of
   them; if none matches it is refused by "no ALLOW policy" (naming them all);
3. with no ALLOW policy, what DENY lets through passes.
A rule matches when its callers, methods and header matchers all do (an empty
list: anything). Callers are exact SPIFFE IDs, prefixes ending in "*", or "*"
(anyone, an unauthenticated caller, identity "", included); exact IDs and
prefixes never match "".

Dry-run policies decide nothing: the evaluator judges the call again as if they
were enforced, and when that would refuse a call the enforced policies let
through, the Decision names the would-be refuser in `would_deny` for the caller
to count and log.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshgrpc.config.specs import AuthorizationPolicySpec, AuthorizationRuleSpec
from meshgrpc.proxy.router import Headers, HeaderTest

ANY = "*"


class Decision:
    """What to do with one call. `policy_name`: the policy that decided ("" when no
    policy applies), `would_deny`: the dry-run policy that would have refused an
    allowed call, or "". Made at compile time and shared: never mutate one."""

    __slots__ = ("allowed", "policy_name", "would_deny")

    def __init__(self, allowed: bool, policy_name: str, would_deny: str = "") -> None:
        self.allowed, self.policy_name, self.would_deny = allowed, policy_name, would_deny

    def __repr__(self) -> str:
        verdict = "allow" if self.allowed else "deny"
        extra = f" would_deny={self.would_deny!r}" if self.would_deny else ""
        return f"Decision({verdict} by {self.policy_name!r}{extra})"


class _Patterns:
    """Exact values, prefixes (a pattern ending in "*") and "*" (anything but "" for
    callers is the caller's business: `matches_empty`)."""

    __slots__ = ("any", "exact", "prefixes")

    def __init__(self, patterns: Iterable[str], encode: bool) -> None:
        patterns = tuple(patterns)
        conv = (lambda s: s.encode()) if encode else (lambda s: s)
        self.any = not patterns or ANY in patterns
        self.exact = frozenset(conv(p) for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(conv(p[:-1]) for p in patterns if p.endswith("*") and p != ANY)

    def holds(self, value) -> bool:
        if self.any:
            return True
        if not value:
            return False
        if value in self.exact:
            return True
        for prefix in self.prefixes:
            if value.startswith(prefix):
                return True
        return False


class _Rule:
    __slots__ = ("callers", "methods", "headers")

    def __init__(self, rule: AuthorizationRuleSpec) -> None:
        self.callers = _Patterns(rule.callers, encode=False)
        self.methods = _Patterns(rule.methods, encode=True)
        self.headers = tuple(HeaderTest(h) for h in rule.headers)

    def matches(self, identity: str, path: bytes, headers: Headers) -> bool:
        if not self.callers.holds(identity) or not self.methods.holds(path):
            return False
        for test in self.headers:
            if not test.holds(headers):
                return False
        return True


class _Policy:
    __slots__ = ("name", "rules", "allow", "deny")

    def __init__(self, spec: AuthorizationPolicySpec) -> None:
        self.name = spec.name
        self.rules = tuple(_Rule(r) for r in spec.rules)
        self.allow, self.deny = Decision(True, spec.name), Decision(False, spec.name)

    def matches(self, identity: str, path: bytes, headers: Headers) -> bool:
        for rule in self.rules:
            if rule.matches(identity, path, headers):
                return True
        return False


class _Judge:
    """One set of policies applied in order: DENY, then ALLOW."""

    __slots__ = ("deny", "allow", "no_allow_match")

    def __init__(self, deny: list[_Policy], allow: list[_Policy]) -> None:
        self.deny, self.allow = tuple(deny), tuple(allow)
        self.no_allow_match = Decision(False, ",".join(p.name for p in allow)) if allow else None

    def judge(self, identity: str, path: bytes, headers: Headers, allow_all: Decision) -> Decision:
        for policy in self.deny:
            if policy.matches(identity, path, headers):
                return policy.deny
        if not self.allow:
            return allow_all
        for policy in self.allow:
            if policy.matches(identity, path, headers):
                return policy.allow
        return self.no_allow_match


class Authorizer:
    """`authorize(identity, path, headers)` for one service's calls. `path` and
    `headers` are bytes as they come off the wire; `identity` the peer's SPIFFE ID
    ("" when the caller has none)."""

    __slots__ = ("service", "policies", "_enforced", "_shadow", "_allow_all", "_variants")

    def __init__(self, service: str, specs: list[AuthorizationPolicySpec]) -> None:
        self.service = service
        self.policies = tuple(s.name for s in specs)
        compiled = [(s, _Policy(s)) for s in sorted(specs, key=lambda s: s.name)]
        enforced = [(s, p) for s, p in compiled if not s.dry_run]
        self._allow_all = Decision(True, "")
        self._enforced = _judge(enforced)
        self._shadow = _judge(compiled) if len(enforced) < len(compiled) else None
        # Every (enforced allow, shadow refusal) pair as one prebuilt Decision, found
        # by identity (Decision hashes by identity: no key is built per call).
        self._variants: dict[Decision, dict[Decision, Decision]] = {}
        if self._shadow is not None:
            allows = [self._allow_all] + [p.allow for _, p in enforced]
            denials = [p.deny for _, p in compiled] + ([self._shadow.no_allow_match]
                                                       if self._shadow.no_allow_match else [])
            for a in allows:
                self._variants[a] = {d: Decision(True, a.policy_name, d.policy_name) for d in denials}

    def authorize(self, identity: str, path: bytes, headers: Headers) -> Decision:
        decision = self._enforced.judge(identity, path, headers, self._allow_all)
        if self._shadow is None or not decision.allowed:
            return decision
        shadow = self._shadow.judge(identity, path, headers, self._allow_all)
        if shadow.allowed:
            return decision
        return self._variants[decision][shadow]

    def __repr__(self) -> str:
        return f"Authorizer({self.service!r}, policies={list(self.policies)})"


def _judge(policies: list[tuple[AuthorizationPolicySpec, _Policy]]) -> _Judge:
    return _Judge([p for s, p in policies if s.action == "DENY"], [p for s, p in policies if s.action == "ALLOW"])


def compile(policies: Iterable[AuthorizationPolicySpec], service: str) -> Authorizer:  # noqa: A001
    """The Authorizer for `service`, from the mesh's policies (others' are ignored)."""
    return Authorizer(service, [p for p in policies if p.service == service])
