"""DiscoveryClient: a proxy's side of the discovery stream.

Subscribes to each type (in TYPE_ORDER), hands each response to `on_update`, and
answers it: ACK, or — when on_update raises ConfigError — a NACK carrying the
error, keeping the version it had (xDS: the proxy stays on its last good
config). When the stream fails it reconnects with exponential backoff and full
jitter (0.1 s doubling to 5 s; AWS architecture blog, "Exponential Backoff And
Jitter"), to the next of its control-plane addresses (replicas serve the same
versions for the same state), resuming with the versions it holds so unchanged
config is not resent. The backoff starts over once a stream was established, so
a stream that broke after an hour is redialled after the shortest delay, not the one its
last failure left.

Transport-agnostic: the client talks to a `DiscoveryStream` (send a request,
receive a response) that a `StreamOpener` opens per connection. In the proxy
that is meshgrpc.grpcwire (no grpcio in the proxy process); unit tests drive
the same logic through a fake stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2

from meshapi.v1 import discovery_pb2
from meshgrpc.addresses import split_targets
from meshgrpc.backoff import Backoff
from meshgrpc.config.resources import TYPE_ORDER, unpack
from meshgrpc.control_channel import MAX_MESSAGE_BYTES, Keepalive
from meshgrpc.errors import ConfigError
from meshgrpc.grpcwire import Dialer, RpcError
from meshgrpc.grpcwire.status import DEADLINE_EXCEEDED
from meshgrpc.tasks import OwnedTask

log = logging.getLogger(__name__)

METHOD = "/meshapi.v1.Discovery/StreamResources"
OnUpdate = Callable[[str, str, list[Message]], None]
OPEN_TIMEOUT = 30.0   # for the control plane to accept a stream (its own first-request timeout)


class DiscoveryStream(Protocol):
    """One discovery stream as the client's logic sees it (a grpcwire Call, or a fake)."""

    async def send(self, request: Message) -> None:
        """Sends one request; nothing once the server has ended the stream."""

    async def recv(self) -> Message | None:
        """The next response; None once the server ended the stream OK; raises
        RpcError once it failed."""

    async def response_headers(self, timeout: float | None = None) -> list:
        """Returns once the server accepted the stream; raises RpcError if it refused
        it, TimeoutError after `timeout`."""


class StreamOpener(Protocol):
    """Opens a stream on a connection of its own, closed when the block ends
    (grpcwire.Dialer.open_stream)."""

    def open_stream(self, target: str, method: str,
                    response_class: type[Message]) -> AbstractAsyncContextManager[DiscoveryStream]: ...


def control_plane_dialer(keepalive: Keepalive | None = None, **tls_and_credentials) -> Dialer:
    """How a proxy reaches the control plane: keepalive pings on the idle stream
    (control_channel.py says why and how often) and the message limit both ends
    share. `tls_and_credentials` are Dialer's (ssl_context, server_hostname,
    metadata) for a control plane that serves TLS and asks for credentials."""
    return Dialer(keepalive=keepalive or Keepalive(), max_message_bytes=MAX_MESSAGE_BYTES, **tls_and_credentials)


class DiscoveryClient:
    """`subscriptions` maps type URL to resource names ([] = all). `versions` holds
    the version last applied per type; `connected` is True while a stream is up.
    `target` is one "host:port" or a comma list of control-plane replicas;
    `dialer` opens the streams (default: control_plane_dialer(), plaintext); the
    proxy's carries its credentials (identity/joining.py)."""

    METHOD = METHOD
    RESPONSE = discovery_pb2.DiscoveryResponse

    def __init__(self, target: str, node: discovery_pb2.Node, subscriptions: Mapping[str, list[str]],
                 on_update: OnUpdate, *, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 initial_backoff: float = 0.1, max_backoff: float = 5.0,
                 dialer: StreamOpener | None = None, open_timeout: float = OPEN_TIMEOUT) -> None:
        unknown = [t for t in subscriptions if t not in TYPE_ORDER]
        if unknown:
            raise ValueError(f"unknown resource types {unknown}")
        self.targets = split_targets(target)
        self.target, self.node = self.targets[0], node
        self.subscriptions = {t: list(subscriptions[t]) for t in TYPE_ORDER if t in subscriptions}
        self.on_update = on_update
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._initial_backoff, self._max_backoff = initial_backoff, max_backoff
        self.dialer = dialer if dialer is not None else control_plane_dialer()
        self._open_timeout = open_timeout
        self.versions: dict[str, str] = {}
        self.connected = False
        self.connects = 0  # streams established so far (observable in tests and admin)
        self.last_error = ""
        self._task = OwnedTask(f"discovery-client {node.id}", self._run)

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        self.connected = False

    async def _run(self) -> None:
        backoff = Backoff(self._rng, self._initial_backoff, self._max_backoff)
        while True:
            connects = self.connects
            try:
                await self._stream_once()
            except RpcError as e:
                self.last_error = str(e)
                log.warning("discovery stream to %s failed: %s", self.target, self.last_error)
            finally:
                self.connected = False
            if self.connects > connects:
                backoff.succeeded()  # the stream came up: start the backoff afresh
            self._next_target()
            await self._sleep(backoff.failed())

    def _next_target(self) -> None:
        self.target = self.targets[(self.targets.index(self.target) + 1) % len(self.targets)]

    async def _stream_once(self) -> None:
        """Runs one stream until it ends (connects counts it once established)."""
        async with self.dialer.open_stream(self.target, self.METHOD, self.RESPONSE) as stream:
            await self._serve(stream)

    async def _serve(self, stream: DiscoveryStream) -> None:
        for i, type_url in enumerate(self.subscriptions):
            await stream.send(self._request(type_url, node=(i == 0)))
        await self._accepted(stream)
        while (response := await stream.recv()) is not None:
            await stream.send(self._answer(response))

    async def _accepted(self, stream: DiscoveryStream) -> None:
        """Waits (bounded) for the control plane to accept the stream: connected."""
        try:
            await stream.response_headers(timeout=self._open_timeout)
        except TimeoutError:
            raise RpcError(DEADLINE_EXCEEDED, f"the control plane did not accept the stream within "
                                              f"{self._open_timeout:g}s") from None
        self.connected, self.connects = True, self.connects + 1

    def _request(self, type_url: str, node: bool, **fields) -> discovery_pb2.DiscoveryRequest:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=self.subscriptions.get(type_url, []),
            version_info=self.versions.get(type_url, ""), **fields)
        if node:
            request.node.CopyFrom(self.node)
        return request

    def _answer(self, response: discovery_pb2.DiscoveryResponse) -> discovery_pb2.DiscoveryRequest:
        """Applies a response and returns its ACK or NACK."""
        type_url, version = response.type_url, response.version_info
        try:
            if type_url not in self.subscriptions:
                raise ConfigError([f"response of unsubscribed type {type_url!r}"])
            self.on_update(type_url, version, self._decode(type_url, response))
        except ConfigError as e:
            log.warning("rejected %s version %s: %s", type_url, version, e)
            error = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(e))
            return self._request(type_url, node=False, response_nonce=response.nonce, error_detail=error)
        self.versions[type_url] = version
        return self._request(type_url, node=False, response_nonce=response.nonce)

    @staticmethod
    def _decode(type_url: str, response: discovery_pb2.DiscoveryResponse) -> list[Message]:
        try:
            return [unpack(type_url, packed) for packed in response.resources]
        except (ValueError, DecodeError) as e:
            raise ConfigError([f"undecodable resource: {e}"]) from None
