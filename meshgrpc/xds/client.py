"""DiscoveryClient: a proxy's side of the discovery stream.

Subscribes to each type (in TYPE_ORDER), hands each response to `on_update`, and
answers it: ACK, or — when on_update raises ConfigError — a NACK carrying the
error, keeping the version it had (xDS: the proxy stays on its last good
config). When the stream fails it reconnects with exponential backoff and full
jitter (0.1 s doubling to 5 s; AWS architecture blog, "Exponential Backoff And
Jitter"), to the next of its control-plane addresses (replicas serve the same
versions for the same state), resuming with the versions it holds so unchanged
config is not resent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, status_pb2

from meshapi.v1 import discovery_pb2
from meshgrpc.addresses import split_targets
from meshgrpc.backoff import Backoff
from meshgrpc.tasks import OwnedTask
from meshgrpc.config.resources import TYPE_ORDER, unpack
from meshgrpc.control_channel import INSECURE
from meshgrpc.errors import ConfigError

log = logging.getLogger(__name__)

METHOD = "/meshapi.v1.Discovery/StreamResources"
OnUpdate = Callable[[str, str, list[Message]], None]


class DiscoveryClient:
    """`subscriptions` maps type URL to resource names ([] = all). `versions` holds
    the version last applied per type; `connected` is True while a stream is up.
    `target` is one "host:port" or a comma list of control-plane replicas."""

    def __init__(self, target: str, node: discovery_pb2.Node, subscriptions: Mapping[str, list[str]],
                 on_update: OnUpdate, *, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 initial_backoff: float = 0.1, max_backoff: float = 5.0,
                 channel_options: tuple = (), credentials=INSECURE) -> None:
        """`credentials`: what opens each stream's channel (`aio_channel(target,
        options)`): control_channel.ClientCredentials, or a workload's identity,
        whose certificate is the current one at every reconnect."""
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
        self._channel_options = channel_options
        self._credentials = credentials
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
            try:
                if await self._stream_once():
                    backoff.succeeded()  # the stream came up: start the backoff afresh
            except grpc.aio.AioRpcError as e:
                self.last_error = f"{e.code().name}: {e.details()}"
                log.warning("discovery stream to %s failed: %s", self.target, self.last_error)
            except asyncio.InvalidStateError:
                # A write after the server ended the stream with OK: just reconnect.
                self.last_error = "stream ended by the server"
            finally:
                self.connected = False
            self._next_target()
            await self._sleep(backoff.failed())

    def _next_target(self) -> None:
        self.target = self.targets[(self.targets.index(self.target) + 1) % len(self.targets)]

    async def _stream_once(self) -> bool:
        """Runs one stream until it ends; True if it was established."""
        async with self._credentials.aio_channel(self.target, options=self._channel_options) as channel:
            call = channel.stream_stream(
                METHOD, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString)()
            for i, type_url in enumerate(self.subscriptions):
                await call.write(self._request(type_url, node=(i == 0)))
            await call.initial_metadata()
            self.connected, self.connects = True, self.connects + 1
            while (response := await call.read()) is not grpc.aio.EOF:
                await call.write(self._answer(response))
            await call.code()  # raises nothing; an abnormal end surfaces as AioRpcError on read
            return True

    def _request(self, type_url: str, node: bool, **fields) -> discovery_pb2.DiscoveryRequest:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=self.subscriptions[type_url],
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
