"""The operator commands that talk to a running control plane: apply, get,
delete, status and register.

Each call has a deadline; --control-plane may list several replicas
(`a:15010,b:15010`), tried in turn while one cannot be reached. When none can be
the command says so in one line and exits 2. Bad input exits 1 with the server's
reasons (every validation error with its field path). Input refused before it is
judged exits 2: a file past a parsing bound (config/bounds.py), a config too large
for the management API (control_channel.py), or `apply --replace` of an empty
config without --allow-empty (which prints what it would remove first).
`register` holds its registration until SIGTERM/SIGINT; when the stream breaks it
re-registers with backoff at the next replica, resuming its lease so that nothing
changes; its stream keeps alive like the proxy's discovery stream.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import random
import signal
import sys

import grpc

from meshapi.v1 import management_pb2, management_pb2_grpc, resources_pb2
from meshgrpc.addresses import split_targets
from meshgrpc.backoff import Backoff
from meshgrpc.config import resources
from meshgrpc.config.loader import dump, load_file
from meshgrpc.control_channel import (MAX_MESSAGE_BYTES, ClientCredentials, CredentialError, Keepalive,
                                      client_options, credentials_from_args)
from meshgrpc.errors import ConfigError, LimitExceeded
from meshgrpc.proxyless import status as proxyless_status

log = logging.getLogger("meshgrpc.register")

DEADLINE = 10.0  # seconds allowed for each call to the control plane
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
GET_KINDS = {"clusters": management_pb2.CLUSTER, "endpoints": management_pb2.ENDPOINTS,
             "routes": management_pb2.ROUTE, "listeners": management_pb2.LISTENER,
             "authorization-policies": management_pb2.AUTHORIZATION_POLICY,
             "all": management_pb2.RESOURCE_KIND_UNSPECIFIED}
DELETE_KINDS = {"cluster": management_pb2.CLUSTER, "endpoints": management_pb2.ENDPOINTS,
                "route": management_pb2.ROUTE, "listener": management_pb2.LISTENER,
                "authorization-policy": management_pb2.AUTHORIZATION_POLICY}


class _Failed(Exception):
    """Ends a command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _command(body):
    """Runs `body(args, stub)` on a channel to each --control-plane address in turn
    until one answers, and maps failures to exit codes."""
    def run(args: argparse.Namespace) -> int:
        try:
            targets = split_targets(args.control_plane)
        except ValueError as e:
            print(f"--control-plane {e}", file=sys.stderr)
            return 2
        try:
            credentials = credentials_from_args(args)
        except CredentialError as e:
            print(str(e), file=sys.stderr)
            return 2
        try:
            return _first_reachable(targets, credentials, lambda stub: body(args, stub))
        except grpc.RpcError as e:
            code, message = _explain(args.control_plane, e.code(), e.details())
            print(message, file=sys.stderr)
            return code
        except _Failed as e:
            print(str(e), file=sys.stderr)
            return e.code
    run.__name__ = body.__name__
    return run


def _first_reachable(targets: list[str], credentials: ClientCredentials, call):
    for i, target in enumerate(targets):
        try:
            with credentials.channel(target, options=client_options()) as channel:
                return call(management_pb2_grpc.ManagementStub(channel))
        except grpc.RpcError as e:
            if e.code() not in UNREACHABLE or i == len(targets) - 1:
                raise
            log.warning("control plane %s: %s; trying %s", target, e.code().name, targets[i + 1])


def _explain(target: str, code: grpc.StatusCode, details: str | None) -> tuple[int, str]:
    if code in UNREACHABLE:
        return 2, f"cannot reach the control plane at {target}: {details or code.name}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return 1, f"error ({code.name}): {details} (the control plane at {target} wants a credential)"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return 2, (f"error ({code.name}): {details} (the management API carries messages of at most "
                   f"{MAX_MESSAGE_BYTES >> 20} MiB)")
    return 1, f"error ({code.name}): {details}"


# --- apply, get, delete, status -------------------------------------------------

@_command
def apply(args, stub) -> int:
    request = _apply_request(args)
    if request.replace and not request.allow_empty and not _resource_count(request.config):
        return _refuse_emptying(args, stub, request)
    response = stub.Apply(request, timeout=DEADLINE)
    print(_changes_text(response.changes, args.dry_run), end="")
    return 0


def _apply_request(args) -> management_pb2.ApplyRequest:
    try:
        config = load_file(args.file)
    except ConfigError as e:
        raise _Failed(str(e), 2 if isinstance(e, LimitExceeded) else 1) from None
    request = management_pb2.ApplyRequest(config=config, replace=args.replace, dry_run=args.dry_run,
                                          allow_empty=args.allow_empty)
    if request.ByteSize() > MAX_MESSAGE_BYTES:
        raise _Failed(f"{args.file}: the config is {request.ByteSize()} bytes as a message, more than the "
                      f"management API's limit of {MAX_MESSAGE_BYTES} bytes", 2)
    return request


def _refuse_emptying(args, stub, request: management_pb2.ApplyRequest) -> int:
    """A replace with an empty config removes everything: show what, and stop unless allowed."""
    preview = management_pb2.ApplyRequest(config=request.config, replace=True, dry_run=True, allow_empty=True)
    changes = stub.Apply(preview, timeout=DEADLINE).changes
    if not changes:  # the mesh is already empty: nothing to remove, nothing to refuse
        print(_changes_text(changes, args.dry_run), end="")
        return 0
    print(_changes_text(changes, dry_run=False), end="")
    raise _Failed(f"refusing to apply {args.file} with --replace: it is empty and would remove every resource "
                  "above (pass --allow-empty to do that)", 2)


def _resource_count(config: resources_pb2.MeshConfig) -> int:
    return sum(len(getattr(config, field)) for field in resources.MESH_FIELD.values())


@_command
def get(args, stub) -> int:
    response = stub.Get(management_pb2.GetRequest(kind=GET_KINDS[args.kind], name=args.name), timeout=DEADLINE)
    if args.output == "json":
        print(dump(response.config, "json"), end="")
    else:
        print(f"# versions: {_versions_text(response.versions)}")
        print(dump(response.config, "yaml"), end="")
    return 0


@_command
def delete(args, stub) -> int:
    request = management_pb2.DeleteRequest(kind=DELETE_KINDS[args.kind], name=args.name, dry_run=args.dry_run)
    response = stub.Delete(request, timeout=DEADLINE)
    print(_changes_text(response.changes, args.dry_run), end="")
    return 0


@_command
def status(args, stub) -> int:
    response = stub.ProxyStatus(management_pb2.ProxyStatusRequest(), timeout=DEADLINE)
    print(f"# versions: {_versions_text(response.versions)}")
    sidecars = [p for p in response.proxies if not proxyless_status.is_proxyless(p)]
    clients = [p for p in response.proxies if proxyless_status.is_proxyless(p)]
    print(status_table(sidecars), end="")
    if clients:
        print("\n" + status_table(clients, proxyless_status.COLUMNS, with_client=True), end="")
        print(proxyless_status.unsupported_text(clients), end="")
    return 0


def status_table(proxies, columns: dict[str, str] | None = None, with_client: bool = False) -> str:
    """One row per node: NODE, (CLIENT,) PEER, CONNECTED, then STATE VERSION per
    type; `columns` maps each type URL to its title (default: the sidecars' types)."""
    columns = columns or {t: resources.SHORT_NAME[t].upper() for t in resources.TYPE_ORDER}
    header = ["NODE", *(["CLIENT"] if with_client else []), "PEER", "CONNECTED", *columns.values()]
    rows = [header] + [_status_row(p, columns, with_client) for p in sorted(proxies, key=lambda p: p.node_id)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip() for r in rows]
    if not proxies:
        lines.append("(no proxies connected)")
    return "\n".join(lines) + "\n"


def _status_row(proxy: management_pb2.ProxyStatus, columns: dict[str, str], with_client: bool) -> list[str]:
    by_type = {t.type_url: t for t in proxy.types}
    since = proxy.connected_since.ToDatetime(tzinfo=datetime.timezone.utc).isoformat(timespec="seconds")
    client = [proxy.client or "-"] if with_client else []
    return [proxy.node_id, *client, proxy.peer, since] + [_type_cell(by_type.get(t)) for t in columns]


def _type_cell(ts: management_pb2.TypeStatus | None) -> str:
    if ts is None or ts.state in (management_pb2.TypeStatus.NOT_SENT, management_pb2.TypeStatus.SYNC_STATE_UNSPECIFIED):
        return "NOT_SENT"
    state = management_pb2.TypeStatus.SyncState.Name(ts.state)
    if ts.state == management_pb2.TypeStatus.NACKED:
        return f"NACKED {ts.sent_version} ({ts.error.splitlines()[0] if ts.error else 'no reason given'})"
    return f"{state} {ts.sent_version}"


def _versions_text(versions) -> str:
    return " ".join(f"{resources.SHORT_NAME[t]}={versions[t]}" for t in resources.MESH_TYPES if t in versions)


def _changes_text(changes, dry_run: bool) -> str:
    if not changes:
        return "no changes\n"
    out = []
    for c in changes:
        action = management_pb2.ResourceChange.Action.Name(c.action).lower()
        kind = management_pb2.ResourceKind.Name(c.kind).lower()
        out.append(f"{action} {kind} {c.name}\n{c.diff}")
    if dry_run:
        out.append("(dry run: nothing changed)\n")
    return "".join(out)


# --- register -------------------------------------------------------------------

def register(args: argparse.Namespace) -> int:
    try:
        instance = _instance(args)
    except ValueError as e:
        print(f"meshgrpc register: {e}", file=sys.stderr)
        return 1
    try:
        targets = split_targets(args.control_plane)
    except ValueError as e:
        print(f"meshgrpc register: --control-plane {e}", file=sys.stderr)
        return 2
    try:
        credentials = credentials_from_args(args)
    except CredentialError as e:
        print(f"meshgrpc register: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_register(targets, credentials, instance, random.Random()))


def _instance(args: argparse.Namespace) -> management_pb2.Instance:
    metadata = {}
    for item in args.metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata {item!r}: expected KEY=VALUE")
        metadata[key] = value
    return management_pb2.Instance(cluster=args.cluster, address=args.address, weight=args.weight,
                                   zone=args.zone, metadata=metadata)


async def _register(targets: list[str], credentials: ClientCredentials, instance: management_pb2.Instance,
                    rng: random.Random) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await hold_registration(targets, credentials, instance, rng, stop)


async def hold_registration(targets: list[str], credentials, instance: management_pb2.Instance,
                            rng: random.Random, stop: asyncio.Event) -> int:
    """Registers `instance` and holds it (heartbeats, re-registering elsewhere when a
    stream breaks) until `stop` is set, then unregisters; returns the exit code.
    `credentials` has `aio_channel(target, options=...)` (ClientCredentials, or a
    proxy's WorkloadIdentity). The proxy's inbound endpoint is held the same way."""
    backoff, held = Backoff(rng, jitter=0.5), _Held()
    attempt = 0
    while not stop.is_set():
        target = targets[attempt % len(targets)]
        try:
            async with credentials.aio_channel(target, options=client_options(Keepalive())) as channel:
                await _hold(management_pb2_grpc.ManagementStub(channel), instance, stop, held, backoff)
            return 0
        except (grpc.aio.AioRpcError, _Lost) as e:
            code, message = _explain(target, *_status_of(e))
            unreachable = code == 2 and attempt + 1 < len(targets)
            if not held.lease and not unreachable:  # refused, or no replica reachable from the start
                print(message if len(targets) == 1 else message.replace(target, ",".join(targets), 1),
                      file=sys.stderr)
                return code
            log.warning("registration lost (%s); re-registering", message)
        attempt += 1
        await _wait(stop, backoff.failed() if held.lease else 0)
    return 0


class _Held:
    """The lease the last registration was answered with (0 before the first)."""

    lease = 0


class _Lost(Exception):
    """The registration stream ended or stalled; `code` is its status when it ended with one."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code(), error.details() or ""
    return error.code, str(error)


async def _hold(stub, instance, stop: asyncio.Event, held: _Held, backoff: Backoff) -> None:
    """Registers (resuming the lease held, if any) and heartbeats until `stop`;
    then ends the stream cleanly (which unregisters)."""
    call = stub.Register()
    try:
        await _send(call, management_pb2.RegisterRequest(instance=instance, lease_id=held.lease))
        reply = await _reply(call, DEADLINE)
        ttl = reply.lease_ttl.ToTimedelta().total_seconds()
        resumed = " (lease resumed)" if held.lease and reply.lease_id == held.lease else ""
        log.info("registered %s in cluster %r (lease ttl %gs)%s", instance.address, instance.cluster, ttl, resumed)
        held.lease = reply.lease_id
        backoff.succeeded()
        while not await _wait(stop, ttl / 3):
            await _send(call, management_pb2.RegisterRequest())
            await _reply(call, min(DEADLINE, ttl))
        await call.done_writing()
        await asyncio.wait_for(call.code(), DEADLINE)
        log.info("unregistered %s", instance.address)
    finally:
        call.cancel()


async def _send(call, request: management_pb2.RegisterRequest) -> None:
    try:
        await call.write(request)
    except asyncio.InvalidStateError:  # the server already ended the call: say why
        code = await call.code()
        raise _Lost(f"{code.name}: {await call.details()}", code) from None


async def _reply(call, timeout: float) -> management_pb2.RegisterResponse:
    try:
        reply = await asyncio.wait_for(call.read(), timeout)
    except TimeoutError:
        raise _Lost(f"no answer within {timeout:g}s") from None
    if reply is grpc.aio.EOF:
        code = await call.code()
        if code != grpc.StatusCode.OK:
            raise _Lost(f"{code.name}: {await call.details()}", code)
        raise _Lost("the control plane ended the stream")
    return reply


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Waits up to `timeout` for `event`; True if it is set."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
    return event.is_set()
