"""Who may call what on the control plane's port: every call is authenticated
(a bearer token, or a workload certificate the TLS stack verified against the
mesh's CA) and checked against the rule of its method before its handler runs.

Roles: `admin` (the token written at first start, or any admin token) may do
everything; `read` tokens may read (get, status, the discovery streams, and the
read-only RPCs others add); a workload (its certificate, or its join token before
it has one) may open discovery streams, register into its own service's cluster
and renew its certificate. No credential: UNAUTHENTICATED; the wrong role:
PERMISSION_DENIED; both say what the method needs.

The table is closed: a method without a rule in `RULES` is refused (PERMISSION_DENIED
"no access rule"), so a new RPC is private until it is given one here.

Handlers learn the caller from `caller()` (a context variable set for the call's
task). With `--insecure` nothing is checked and every caller is admin.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import logging
from collections.abc import Callable

import grpc

from meshgrpc.errors import MeshError, PermissionDenied, Unauthenticated
from meshgrpc.identity import spiffe, tokens
from meshgrpc.identity.ca import peer_identity
from meshgrpc.identity.tokens import TokenStore

log = logging.getLogger(__name__)

ADMIN, READ, WORKLOAD = tokens.ADMIN, tokens.READ, "workload"


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller. `service` for workloads; `token_id` is the token the
    credential rests on (the join token a certificate was issued on, if any)."""

    role: str
    service: str = ""
    token_id: str = ""
    via: str = "token"   # "token", "certificate" or "insecure"

    def describe(self) -> str:
        who = f"{self.role} token {self.token_id}" if self.via == "token" and self.role != WORKLOAD else \
            f"workload {self.service} ({'join token ' + self.token_id if self.via == 'token' else 'certificate'})"
        return "insecure mode" if self.via == "insecure" else who

    def key(self) -> str:
        """What a node id is bound to (one identity per node id)."""
        return f"service:{self.service}" if self.role == WORKLOAD else f"{self.role}:{self.token_id or self.via}"


INSECURE = Principal(ADMIN, via="insecure")


@dataclasses.dataclass(frozen=True)
class Rule:
    """The roles that may call a method."""

    name: str
    roles: tuple[str, ...]


class Rules:
    """(Roles are spelled out: inside this class ADMIN would name the rule.)"""

    OPEN = Rule("open", ())                                              # health checks
    READ = Rule("read", ("admin", "read"))
    ADMIN = Rule("admin", ("admin",))
    WORKLOAD = Rule("workload", ("admin", "workload"))                   # registration, certificates: for oneself
    DISCOVERY = Rule("discovery", ("admin", "read", "workload"))         # config streams (scoped for workloads)


RULES: dict[str, Rule] = {
    "/grpc.health.v1.Health/Check": Rules.OPEN,
    "/grpc.health.v1.Health/Watch": Rules.OPEN,
    "/meshapi.v1.Management/Apply": Rules.ADMIN,
    "/meshapi.v1.Management/Delete": Rules.ADMIN,
    "/meshapi.v1.Management/CreateToken": Rules.ADMIN,
    "/meshapi.v1.Management/RevokeToken": Rules.ADMIN,
    "/meshapi.v1.Management/ListTokens": Rules.ADMIN,
    "/meshapi.v1.Management/Get": Rules.READ,
    "/meshapi.v1.Management/ProxyStatus": Rules.READ,
    "/meshapi.v1.Management/Register": Rules.WORKLOAD,
    "/meshapi.v1.Management/IssueCertificate": Rules.WORKLOAD,
    "/meshapi.v1.Discovery/StreamResources": Rules.DISCOVERY,
    "/meshapi.v1.Discovery/DeltaResources": Rules.DISCOVERY,
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": Rules.DISCOVERY,
    "/meshapi.v1.LoadReporting/StreamLoadReports": Rules.DISCOVERY,     # every proxy reports its load
}

FIRST_REQUEST_WAIT_S = 1.0  # how long a refused stream's first request is waited for

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("meshgrpc_caller", default=INSECURE)


def caller() -> Principal:
    """The caller of the RPC whose task this is (admin when nothing is checked)."""
    return _CALLER.get()


class Authenticator:
    """Turns a call's credentials into a Principal."""

    def __init__(self, token_store: TokenStore, trust_domain: str) -> None:
        self.tokens, self.trust_domain = token_store, trust_domain

    def authenticate(self, metadata, auth_context: dict) -> Principal:
        """Raises Unauthenticated saying why no credential is accepted."""
        certs = auth_context.get("x509_pem_cert")
        if certs:
            return self._from_certificate(certs[0])
        bearer = _bearer(metadata)
        if bearer is None:
            raise Unauthenticated("no credential: send a bearer token (metadata authorization: Bearer TOKEN; "
                                  "the CLI reads --token-file, default .meshgrpc/admin.token, or MESHGRPC_TOKEN) "
                                  "or connect with a workload certificate")
        record = self.tokens.authenticate(bearer)
        if record.role == tokens.JOIN:
            return Principal(WORKLOAD, record.service, record.id)
        return Principal(record.role, token_id=record.id)

    def _from_certificate(self, pem: bytes) -> Principal:
        spiffe_id, token_id = peer_identity(pem)
        service = spiffe.service_of(spiffe_id, self.trust_domain)
        if service is None:
            raise Unauthenticated(f"the client certificate's identity {spiffe_id or '(none)'!r} is not a "
                                  f"workload of trust domain {self.trust_domain}")
        if token_id and not self.tokens.standing(token_id):
            raise Unauthenticated(f"the client certificate of {spiffe_id} was issued on token {token_id}, "
                                  "which is revoked")
        return Principal(WORKLOAD, service, token_id, via="certificate")


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
    return None


def check(rule: Rule, principal: Principal, method: str) -> None:
    """Raises PermissionDenied when `principal` may not call `method` under `rule`."""
    if principal.role not in rule.roles:
        needs = " or ".join("a workload identity" if r == WORKLOAD else f"the {r} role" for r in rule.roles)
        raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs {needs}; this call's credential is "
                               f"{principal.describe()}")


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Runs authentication and the method's rule before every handler."""

    def __init__(self, authenticator: Authenticator | None) -> None:
        """`authenticator` None: insecure mode, every caller is admin."""
        self._authenticator = authenticator

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        rule = RULES.get(method)
        if self._authenticator is None or rule is Rules.OPEN:
            return handler
        return _wrapped(handler, lambda context: self._admit(method, rule, context))

    def _admit(self, method: str, rule: Rule | None, context) -> Principal:
        if rule is None:
            raise PermissionDenied(f"{method} has no access rule on this control plane")
        principal = self._authenticator.authenticate(context.invocation_metadata(), context.auth_context())
        check(rule, principal, method)
        return principal


def _wrapped(handler: grpc.RpcMethodHandler, admit: Callable) -> grpc.RpcMethodHandler:
    kind = ("stream" if handler.request_streaming else "unary") + "_" + \
           ("stream" if handler.response_streaming else "unary")
    behavior = getattr(handler, kind)
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(_guard(behavior, admit, handler.request_streaming), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


def _guard(behavior, admit: Callable, request_streaming: bool):
    async def enter(request, context) -> bool:
        try:
            _CALLER.set(admit(context))
        except MeshError as e:
            log.info("refused %s from %s: %s", type(e).__name__, context.peer(), e)
            if request_streaming:
                await _first_request(request)
            await context.abort(e.code, str(e))
        return True

    if inspect.isasyncgenfunction(behavior):
        async def generator(request, context):
            await enter(request, context)
            async for item in behavior(request, context):
                yield item
        return generator

    async def call(request, context):
        await enter(request, context)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result
    return call


async def _first_request(requests) -> None:
    """Takes a refused stream's first request (bounded) before the refusal goes out:
    a grpcio client whose first write meets a stream the server already ended may
    report INTERNAL ("Internal error from Core") instead of the status it was sent."""
    try:
        async with asyncio.timeout(FIRST_REQUEST_WAIT_S):
            await anext(aiter(requests), None)
    except (TimeoutError, grpc.RpcError, StopAsyncIteration):
        pass
