"""The interop cases run straight against the interop server, with no proxy:
proves the cases and the server agree, so a failure through the proxy is the proxy's."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helloworld import helloworld_pb2, helloworld_pb2_grpc
from meshtest.interop import empty_pb2, messages_pb2, test_pb2, test_pb2_grpc
from tests.support import interop_cases
from tests.support.greeter import add_greeter
from tests.support.interop_server import BackendOptions, run_in_thread


@pytest.fixture(scope="module")
def backend():
    with run_in_thread(options=BackendOptions(name="self-test")) as running:
        yield running


@pytest.fixture(scope="module")
def channel(backend):
    with grpc.insecure_channel(backend.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.mark.parametrize("name", sorted(interop_cases.ALL_CASES))
def test_interop_case_passes_directly(channel, name):
    interop_cases.ALL_CASES[name](channel)


def test_all_standard_cases_are_listed():
    assert set(interop_cases.ALL_CASES) == {
        "empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong",
        "empty_stream", "cancel_after_begin", "cancel_after_first_response",
        "timeout_on_sleeping_server", "custom_metadata", "status_code_and_message",
        "special_status_message", "unimplemented_method", "unimplemented_service"}


def test_wire_method_names_are_grpc_testing():
    # The proto lives under meshtest/ but keeps `package grpc.testing`, so paths
    # on the wire match every other gRPC interop implementation.
    service = test_pb2.DESCRIPTOR.services_by_name["TestService"]
    assert service.full_name == "grpc.testing.TestService"
    assert service.methods_by_name["UnaryCall"].full_name == "grpc.testing.TestService.UnaryCall"


@pytest.fixture(scope="module")
def greeter_channel():
    with run_in_thread(add_services=add_greeter) as greeter, \
            grpc.insecure_channel(greeter.address) as ch:
        yield ch


# The cases whose outcome depends on the server; the other four (unimplemented_*,
# cancel_after_begin, timeout_on_sleeping_server) pass against any server.
SERVER_DEPENDENT = sorted(set(interop_cases.ALL_CASES) - {
    "unimplemented_method", "unimplemented_service", "cancel_after_begin",
    "timeout_on_sleeping_server"})


@pytest.mark.parametrize("name", SERVER_DEPENDENT)
def test_case_fails_against_a_server_without_test_service(greeter_channel, name):
    # A case that cannot fail proves nothing: against the Greeter-only server
    # every TestService call is UNIMPLEMENTED.
    with pytest.raises((grpc.RpcError, AssertionError)):
        interop_cases.ALL_CASES[name](greeter_channel)


def test_responses_name_the_backend(channel):
    _, call = test_pb2_grpc.TestServiceStub(channel).EmptyCall.with_call(
        empty_pb2.Empty(), timeout=5)
    assert ("x-backend", "self-test") in call.initial_metadata()


def test_health_status_flips(backend, channel):
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == serving
    backend.set_serving(False)
    try:
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        backend.set_serving(True)


def test_delay_adds_latency():
    with run_in_thread(options=BackendOptions(delay_s=0.2)) as slow, \
            grpc.insecure_channel(slow.address) as ch:
        start = time.monotonic()
        test_pb2_grpc.TestServiceStub(ch).EmptyCall(empty_pb2.Empty(), timeout=5)
        assert time.monotonic() - start >= 0.2


def test_unsupported_payload_type_is_invalid_argument(channel):
    request = messages_pb2.SimpleRequest(response_type=7)
    with pytest.raises(grpc.RpcError) as info:
        test_pb2_grpc.TestServiceStub(channel).UnaryCall(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_greeter_says_hello_and_names_backend():
    with run_in_thread(options=BackendOptions(name="g1"), add_services=add_greeter) as greeter, \
            grpc.insecure_channel(greeter.address) as ch:
        reply, call = helloworld_pb2_grpc.GreeterStub(ch).SayHello.with_call(
            helloworld_pb2.HelloRequest(name="mesh"), timeout=5)
    assert reply.message == "Hello, mesh! (from g1)"
    assert ("x-backend", "g1") in call.initial_metadata()
