"""The compiled routing table: a pure function from (:authority, :path, headers) to
a route decision.

Everything that can be computed when config changes is computed in
`RouteTable.compile`: the virtual host lookup tables, path regexes (compiled once,
as bytes patterns), header matchers, per-route header sets and cumulative cluster
weights. `RouteTable.route` runs once per call on the event loop thread; it takes
bytes as they come off the wire and never decodes, compiles or builds a dict.

Matching follows the meshapi.v1 contract (resources.proto), which mirrors Envoy's
RouteConfiguration:
- virtual host by :authority, port stripped, case-insensitive: an exact domain,
  then `*suffix` domains longest first, then `prefix*` domains longest first,
  then `*`. A wildcard never matches the empty string (Envoy's rule), so
  `*.example.com` does not match `example.com`.
- then the first route, in config order, whose path matcher (exact, prefix or
  regex fullmatch, on :path without its query string) and header matchers all hold.

`RouteTable.explain` says why (for `meshgrpc explain`): it asks the same
compiled matchers, in config order, what each makes of the call, and reports
the decision `route()` itself returns; `RouteEntry.explain_split` draws the
weighted split as `pick_cluster()` does. Neither is on the call path.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
import time
from typing import Callable

from meshgrpc.config import regex
from meshgrpc.config.specs import ActionSpec, HeaderMatcherSpec, MatchSpec, RouteConfigSpec, RouteSpec
from meshgrpc.proxy.resilience.fault import FaultInjector
from meshgrpc.proxy.resilience.mirror import MirrorPolicy
from meshgrpc.proxy.resilience.rate_limit import RateLimiter

Headers = list[tuple[bytes, bytes]]

# The most distinct :authority values whose virtual host is remembered; past it
# the memo is cleared (bounded memory whatever clients send).
_AUTHORITY_MEMO_SIZE = 1024
_NO_MATCH = 1 << 62  # route index larger than any real one


@dataclasses.dataclass(frozen=True, slots=True)
class RouteEntry:
    """The decision for a matched route. Immutable; shared by every call it matches.

    `pick_cluster()` chooses among weighted clusters per call (weight 0 never
    chosen); with a single cluster it returns that name without drawing. The
    route's rate limiter, fault injector and mirror policy are its only state
    (buckets, draws, copies in flight); they live as long as this compiled table."""

    name: str  # route name, or "<virtual host>/<index>" when the route has none
    timeout: float | None  # seconds; None: no bound but the client's grpc-timeout
    headers_to_add: tuple[tuple[bytes, bytes], ...]  # replacing same-named request headers
    # Request headers dropped before headers_to_add are appended: the configured
    # removals plus every name headers_to_add replaces.
    headers_to_remove: frozenset[bytes]
    hash_header: bytes | None  # request header hashed by RING_HASH clusters
    virtual_host: str = ""
    clusters: tuple[str, ...] = ()  # every cluster this route can send to (metrics, checks)
    action: ActionSpec = dataclasses.field(default=ActionSpec(), repr=False)  # the route's policies
    rate_limiter: RateLimiter | None = dataclasses.field(default=None, repr=False)
    fault: FaultInjector | None = dataclasses.field(default=None, repr=False)
    mirror: MirrorPolicy | None = dataclasses.field(default=None, repr=False)
    _single: str | None = dataclasses.field(default=None, repr=False)
    _choices: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    _cumulative: tuple[float, ...] = dataclasses.field(default=(), repr=False)
    _total: float = dataclasses.field(default=0.0, repr=False)
    _random: Callable[[], float] = dataclasses.field(default=random.random, repr=False)

    def pick_cluster(self) -> str:
        if self._single is not None:
            return self._single
        return self._cluster_at(self._random())

    def _cluster_at(self, draw: float) -> str:
        # _choices has the last cluster twice, so a draw that rounds up to _total
        # still lands on a real cluster without a branch.
        return self._choices[bisect.bisect_right(self._cumulative, draw * self._total)]

    def explain_split(self) -> dict:
        """The weighted split and one draw of it, as pick_cluster() makes it (the draw
        comes from the route's random source, as a call's would)."""
        weights = list(self.action.weighted_clusters) or [(self.action.cluster, 1)]
        total = sum(w for _, w in weights) or 1
        split = [{"cluster": c, "weight": w, "share": w / total} for c, w in weights]
        if self._single is not None:
            return {"clusters": split, "draw": None, "chosen": self._single,
                    "why": f"{self._single} is the only cluster the route sends to"}
        draw = self._random()
        chosen = self._cluster_at(draw)
        return {"clusters": split, "draw": draw, "chosen": chosen,
                "why": f"draw {draw:.3f} of the weights' total falls in {chosen}'s share"}


class _Matcher:
    """One compiled route: path test, header tests and the entry it yields."""

    __slots__ = ("index", "kind", "value", "regex", "header_tests", "entry")

    def __init__(self, index: int, match: MatchSpec, entry: RouteEntry) -> None:
        self.index = index
        self.kind = match.kind
        self.value = match.value.encode()
        self.regex = _compile_fullmatch(match.value) if self.kind == "regex" else None
        self.header_tests = tuple(_HeaderTest(h) for h in match.headers)
        self.entry = entry

    def matches(self, path: bytes, headers: Headers) -> bool:
        if not self.path_holds(path):
            return False
        for test in self.header_tests:
            if not test.holds(headers):
                return False
        return True

    def path_holds(self, path: bytes) -> bool:
        kind = self.kind
        if kind == "prefix":
            return path.startswith(self.value)
        if kind == "path":
            return path == self.value
        return self.regex(path) is not None

    def mismatches(self, path: bytes, headers: Headers) -> list[str]:
        """Why this route does not match the call ([] when it does), from the same tests."""
        reasons = []
        if not self.path_holds(path):
            wanted = {"prefix": "start with", "path": "equal", "regex": "fully match the regex"}[self.kind]
            reasons.append(f"path {path.decode('utf-8', 'replace')!r} does not {wanted} {self.value.decode()!r}")
        reasons += [why for test in self.header_tests if (why := test.mismatch(headers)) is not None]
        return reasons

    def describe(self) -> str:
        return ", ".join([f"{self.kind} {self.value.decode()}"] + [t.describe() for t in self.header_tests])


class _HeaderTest:
    """One compiled HeaderMatcher.

    An absent header fails every kind except `present`, and `invert` does not turn
    that failure into a match (as in Envoy and grpc-go's xDS matchers): inverting
    `exact: a` means "present and not a". Headers ending in -bin are never matched
    (gRFC A28): a matcher naming one always fails, inverted or not. Repeated
    headers are compared as their values joined with "," (RFC 9110 5.3)."""

    __slots__ = ("name", "kind", "value", "regex", "invert", "never")

    def __init__(self, matcher: HeaderMatcherSpec) -> None:
        self.name = matcher.name.encode()
        self.kind = matcher.kind
        spec = matcher.value
        self.value = spec.encode() if isinstance(spec, str) else spec
        self.regex = _compile_fullmatch(spec) if self.kind == "regex" else None
        self.invert = matcher.invert
        self.never = self.name.endswith(b"-bin")

    def holds(self, headers: Headers) -> bool:
        if self.never:
            return False
        value = _header_value(headers, self.name)
        if self.kind == "present":
            return ((value is not None) == self.value) != self.invert
        if value is None:
            return False
        return self._compare(value) != self.invert

    def mismatch(self, headers: Headers) -> str | None:
        """Why the header test fails for these headers; None when it holds."""
        if self.holds(headers):
            return None
        name = self.name.decode()
        if self.never:
            return f"header {name} ends in -bin: never matched (gRFC A28)"
        value = _header_value(headers, self.name)
        got = "absent" if value is None else repr(value.decode("utf-8", "replace"))
        return f"header {name}: wanted {self._wanted()}, got {got}"

    def describe(self) -> str:
        return f"header {self.name.decode()} {self._wanted()}"

    def _wanted(self) -> str:
        if self.kind == "present":
            return "present" if self.value != self.invert else "absent"
        shown = self.value.decode("utf-8", "replace") if isinstance(self.value, bytes) else self.value
        return f"{'not ' if self.invert else ''}{self.kind} {shown!r}"

    def _compare(self, value: bytes) -> bool:
        kind = self.kind
        if kind == "exact":
            return value == self.value
        if kind == "prefix":
            return value.startswith(self.value)
        if kind == "suffix":
            return value.endswith(self.value)
        return self.regex(value) is not None


# The compiled header matcher, for other modules that match request headers the
# way routes do (authorization rules, meshgrpc/authz/).
HeaderTest = _HeaderTest


def _header_value(headers: Headers, name: bytes) -> bytes | None:
    """The header's value; repeated headers joined with ",". A scan, not a dict:
    requests carry few headers and most routes test none."""
    found = None
    for key, value in headers:
        if key == name:
            found = value if found is None else found + b"," + value
    return found


def _compile_fullmatch(pattern: str) -> Callable[[bytes], object]:
    """A fullmatch over the raw bytes, in RE2 (config/regex.py says why and what
    \\d, \\w and non-UTF-8 bytes mean); None when the value does not match."""
    return regex.compile_fullmatch(pattern)


class _VirtualHost:
    """A virtual host's routes, indexed so that one call rarely tests more than
    one route while the first matching route in config order still wins.

    Routes with no header matchers and an exact path go into `exact` (path ->
    first such route); those whose prefix is "/" or a whole gRPC service ("/pkg.Svc/")
    go into `catch_all` / `services`. The rest stay in `others`, in order. A lookup
    takes the earliest indexed candidate and then tests only the `others` that
    come before it. `decided` goes one step further: for each exact path in the
    config whose answer cannot depend on headers, the answer itself."""

    __slots__ = ("name", "exact", "services", "catch_all", "others", "decided", "matchers")

    def __init__(self, name: str, matchers: list[_Matcher]) -> None:
        self.name = name
        self.matchers = tuple(matchers)  # every route in config order (for explain)
        self.exact: dict[bytes, _Matcher] = {}
        self.services: dict[bytes, _Matcher] = {}
        self.catch_all: _Matcher | None = None
        others = []
        for m in matchers:
            if not self._index(m):
                others.append(m)
        self.others = tuple(others)
        # Keys never hold "?": a request path with a query string takes the slow path.
        self.decided = {path: entry for path in self.exact
                        if b"?" not in path and (entry := _decided(matchers, path))}

    def _index(self, m: _Matcher) -> bool:
        if m.header_tests or m.kind == "regex":
            return False
        if m.kind == "path":
            self.exact.setdefault(m.value, m)
        elif m.value == b"/":
            self.catch_all = self.catch_all or m
        elif _is_service_prefix(m.value):
            self.services.setdefault(m.value, m)
        else:
            return False
        return True

    def route(self, path: bytes, headers: Headers) -> RouteEntry | None:
        best = self.catch_all
        exact = self.exact.get(path)
        if exact is not None and (best is None or exact.index < best.index):
            best = exact
        if self.services:
            end = path.find(b"/", 1)
            if end > 0:
                svc = self.services.get(path[: end + 1])
                if svc is not None and (best is None or svc.index < best.index):
                    best = svc
        limit = best.index if best is not None else _NO_MATCH
        for m in self.others:
            if m.index > limit:
                break
            if m.matches(path, headers):
                return m.entry
        return best.entry if best is not None else None

    def explain(self, path: bytes, headers: Headers, decision: RouteEntry | None) -> list[dict]:
        """Every route in config order: chosen, or why not (`decision` is route()'s answer)."""
        out, chosen = [], None
        for m in self.matchers:
            reasons = m.mismatches(path, headers)
            if m.entry is decision and chosen is None:
                chosen, verdict = m.entry.name, "chosen"
            elif reasons:
                verdict = "no match: " + "; ".join(reasons)
            elif chosen is not None:
                verdict = f"matches too, but route {chosen} comes first (the first match wins)"
            else:
                verdict = "matches, but was not chosen (report this: route() disagrees)"
            out.append({"route": m.entry.name, "match": m.describe(), "cluster": list(m.entry.clusters),
                        "chosen": m.entry is decision, "verdict": verdict})
        return out


def _decided(matchers: list[_Matcher], path: bytes) -> RouteEntry | None:
    """The entry `path` always gets, or None if headers decide it: the first route
    whose path test holds settles it unless that route also tests headers."""
    for m in matchers:
        if m.path_holds(path):
            return None if m.header_tests else m.entry
    return None


def _is_service_prefix(prefix: bytes) -> bool:
    """True for "/x/" with no other slash: one path segment, as gRPC services are."""
    return len(prefix) > 2 and prefix.startswith(b"/") and prefix.endswith(b"/") and prefix.count(b"/") == 2


class RouteTable:
    """An immutable, compiled RouteConfig. Build with `RouteTable.compile`.

    `route()` is called on the event loop thread only. Its one piece of state is a
    bounded memo of :authority -> virtual host, which changes no answer."""

    __slots__ = ("name", "spec", "_exact", "_suffixes", "_prefixes", "_any", "_memo", "_vhosts")

    def __init__(self, name: str, vhosts: list[tuple[list[str], _VirtualHost]],
                 spec: RouteConfigSpec | None = None) -> None:
        self.name = name
        self.spec = spec  # what it was compiled from (config_dump shows it)
        self._vhosts = tuple(vh for _, vh in vhosts)
        self._exact: dict[bytes, _VirtualHost] = {}
        suffixes: dict[bytes, _VirtualHost] = {}
        prefixes: dict[bytes, _VirtualHost] = {}
        self._any: _VirtualHost | None = None
        for domains, vh in vhosts:
            for domain in domains:
                d = domain.lower().encode()
                if d == b"*":
                    self._any = self._any or vh
                elif d.startswith(b"*"):
                    suffixes.setdefault(d[1:], vh)
                elif d.endswith(b"*"):
                    prefixes.setdefault(d[:-1], vh)
                else:
                    self._exact.setdefault(d, vh)
        # Longest first: the most specific wildcard wins.
        self._suffixes = tuple(sorted(suffixes.items(), key=lambda kv: -len(kv[0])))
        self._prefixes = tuple(sorted(prefixes.items(), key=lambda kv: -len(kv[0])))
        self._memo: dict[bytes, _VirtualHost | None] = {}

    @classmethod
    def compile(cls, route_config: RouteConfigSpec, rng: random.Random | None = None,
                clock: Callable[[], float] = time.monotonic) -> RouteTable:
        """Compiles the spec of a (validated) RouteConfig. `rng` draws weighted
        clusters, faults and mirrors; `clock` drives rate limits."""
        draw = (rng or random.Random()).random
        vhosts = []
        for vh in route_config.virtual_hosts:
            matchers = [_Matcher(i, r.match, _entry(vh.name, r, draw, clock)) for i, r in enumerate(vh.routes)]
            vhosts.append((list(vh.domains), _VirtualHost(vh.name, matchers)))
        return cls(route_config.name, vhosts, route_config)

    def route(self, authority: bytes, path: bytes, headers: Headers) -> RouteEntry | None:
        """The entry of the first matching route, or None (no virtual host or route)."""
        try:
            vh = self._memo[authority]
        except KeyError:
            vh = self._remember(authority)
        if vh is None:
            return None
        entry = vh.decided.get(path)
        if entry is not None:
            return entry
        if b"?" in path:
            path = path[: path.index(b"?")]
        return vh.route(path, headers)

    def virtual_host(self, authority: bytes) -> str | None:
        """Name of the virtual host serving `authority` (for tests and debugging)."""
        vh = self._lookup(_host_of(authority))
        return vh.name if vh is not None else None

    def explain(self, authority: bytes, path: bytes, headers: Headers) -> dict:
        """Which virtual host and route `route()` takes for this call, and why each
        route in the virtual host was or was not taken. JSON-ready."""
        host = _host_of(authority)
        vh, how = self._find(host)
        decision = self.route(authority, path, headers)
        out = {"route_config": self.name, "host": host.decode("utf-8", "replace"),
               "virtual_host": vh.name if vh is not None else None, "virtual_host_why": how,
               "route": decision.name if decision is not None else None}
        if vh is not None:
            out["routes"] = vh.explain(path.split(b"?", 1)[0], headers, decision)
        return out

    def _remember(self, authority: bytes) -> _VirtualHost | None:
        if len(self._memo) >= _AUTHORITY_MEMO_SIZE:
            self._memo.clear()
        vh = self._memo[authority] = self._lookup(_host_of(authority))
        return vh

    def _lookup(self, host: bytes) -> _VirtualHost | None:
        return self._find(host)[0]

    def _find(self, host: bytes) -> tuple[_VirtualHost | None, str]:
        """The virtual host for `host` and which of its domains matched."""
        shown = host.decode("utf-8", "replace")
        vh = self._exact.get(host)
        if vh is not None:
            return vh, f"domain {shown!r} matches exactly"
        for suffix, vh in self._suffixes:
            if len(host) > len(suffix) and host.endswith(suffix):
                return vh, f"domain '*{suffix.decode()}' is the longest suffix of {shown!r}"
        for prefix, vh in self._prefixes:
            if len(host) > len(prefix) and host.startswith(prefix):
                return vh, f"domain '{prefix.decode()}*' is the longest prefix of {shown!r}"
        if self._any is not None:
            return self._any, f"domain '*' matches any host; none more specific matches {shown!r}"
        return None, f"no virtual host's domains match {shown!r}"

    def __repr__(self) -> str:
        routes = sum(len(vh.exact) + len(vh.services) + len(vh.others) + (vh.catch_all is not None)
                     for vh in self._vhosts)
        return f"<RouteTable {self.name!r} virtual_hosts={len(self._vhosts)} indexed_routes={routes}>"


def _host_of(authority: bytes) -> bytes:
    """Lower-cased host of an :authority, port stripped ("[::1]:80" -> "[::1]")."""
    host = authority.lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1] if end > 0 else host
    colon = host.rfind(b":")
    if colon >= 0 and host[colon + 1:].isdigit():
        return host[:colon]
    return host


def _entry(vhost: str, route: RouteSpec, draw: Callable[[], float], clock: Callable[[], float]) -> RouteEntry:
    action = route.action
    weighted = [(n, w) for n, w in action.weighted_clusters if w > 0]
    names = tuple(n for n, _ in weighted) if action.weighted_clusters else (action.cluster,)
    to_add = tuple((n.encode(), v.encode()) for n, v in action.headers_to_add)
    return RouteEntry(
        name=route.name,
        timeout=action.timeout,
        headers_to_add=to_add,
        headers_to_remove=frozenset(n.encode() for n in action.headers_to_remove) | {name for name, _ in to_add},
        hash_header=action.hash_header.encode() if action.hash_header else None,
        virtual_host=vhost,
        clusters=names,
        action=action,
        rate_limiter=RateLimiter(action.rate_limit, clock) if action.rate_limit is not None else None,
        fault=FaultInjector(action.fault, draw) if action.fault is not None else None,
        mirror=MirrorPolicy(action.mirror, draw) if action.mirror is not None else None,
        **_weights(action.cluster, weighted, draw),
    )


def _weights(single: str, weighted: list[tuple[str, int]], draw: Callable[[], float]) -> dict:
    if not weighted:
        return {"_single": single}
    if len(weighted) == 1:
        return {"_single": weighted[0][0]}
    cumulative, total = [], 0
    for _, weight in weighted:
        total += weight
        cumulative.append(float(total))
    choices = tuple(n for n, _ in weighted) + (weighted[-1][0],)
    return {"_choices": choices, "_cumulative": tuple(cumulative), "_total": float(total), "_random": draw}
