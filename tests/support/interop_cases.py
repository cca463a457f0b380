"""The standard gRPC interop client cases, each a function of a `grpc.Channel`.

Each follows grpc/grpc doc/interop-test-descriptions.md: the same procedure,
request sizes and client assertions (a failed assertion raises AssertionError,
an unexpected RPC failure raises grpc.RpcError). Pointing the channel at the
proxy instead of the server is what proves the relay interoperates.
Every call carries a deadline so a broken relay fails a case instead of hanging it.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

import grpc

from meshtest.interop import empty_pb2, messages_pb2, test_pb2_grpc

TIMEOUT = 20.0  # seconds: the deadline on every call that is not about deadlines

LARGE_REQUEST_SIZE = 271828
LARGE_RESPONSE_SIZE = 314159
REQUEST_SIZES = (27182, 8, 1828, 45904)
RESPONSE_SIZES = (31415, 9, 2653, 58979)
ECHO_INITIAL = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING = ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"


class _Pipe:
    """A request iterator the case feeds one message at a time (ping-pong needs
    to send after each reply). Bounded; closing it half-closes the call. A pipe
    nobody closes ends itself after `idle_timeout` so the sending thread never hangs."""

    _CLOSED = object()

    def __init__(self, idle_timeout: float = TIMEOUT) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=16)
        self._idle_timeout = idle_timeout

    def add(self, message) -> None:
        self._queue.put(message, timeout=self._idle_timeout)

    def close(self) -> None:
        self._queue.put(self._CLOSED, timeout=self._idle_timeout)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            item = self._queue.get(timeout=self._idle_timeout)
        except queue.Empty:
            raise StopIteration from None
        if item is self._CLOSED:
            raise StopIteration
        return item

    def __enter__(self) -> _Pipe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stub(channel: grpc.Channel) -> test_pb2_grpc.TestServiceStub:
    return test_pb2_grpc.TestServiceStub(channel)


def _zeros(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(body=bytes(size))


def _streaming_request(response_size: int | None, payload_size: int,
                       ) -> messages_pb2.StreamingOutputCallRequest:
    request = messages_pb2.StreamingOutputCallRequest(payload=_zeros(payload_size))
    if response_size is not None:
        request.response_parameters.add(size=response_size)
    return request


def _expect_status(error: grpc.RpcError, code: grpc.StatusCode, details: str | None = None) -> None:
    assert error.code() == code, f"status {error.code()} ({error.details()!r}), expected {code}"
    if details is not None:
        assert error.details() == details, f"details {error.details()!r}, expected {details!r}"


def _fails_with(call: Callable[[], object], code: grpc.StatusCode, details: str | None = None):
    try:
        result = call()
    except grpc.RpcError as error:
        _expect_status(error, code, details)
        return
    raise AssertionError(f"expected {code}, the call succeeded with {result!r}")


def _assert_body(payload: messages_pb2.Payload, size: int) -> None:
    assert len(payload.body) == size, f"payload of {len(payload.body)} bytes, expected {size}"
    assert payload.body == bytes(size), "payload body is not all zeros"


def _metadata_value(metadata, key: str):
    values = [v for k, v in (metadata or ()) if k == key]
    assert len(values) == 1, f"expected one {key!r} in {metadata!r}"
    return values[0]


def _assert_echoed(call) -> None:
    assert _metadata_value(call.initial_metadata(), ECHO_INITIAL[0]) == ECHO_INITIAL[1]
    assert _metadata_value(call.trailing_metadata(), ECHO_TRAILING[0]) == ECHO_TRAILING[1]


# ------------------------------------------------------------------- the cases

def empty_unary(channel: grpc.Channel) -> None:
    response = _stub(channel).EmptyCall(empty_pb2.Empty(), timeout=TIMEOUT)
    assert isinstance(response, empty_pb2.Empty)


def large_unary(channel: grpc.Channel) -> None:
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=LARGE_RESPONSE_SIZE,
        payload=_zeros(LARGE_REQUEST_SIZE))
    response = _stub(channel).UnaryCall(request, timeout=TIMEOUT)
    _assert_body(response.payload, LARGE_RESPONSE_SIZE)


def client_streaming(channel: grpc.Channel) -> None:
    requests = (messages_pb2.StreamingInputCallRequest(payload=_zeros(n)) for n in REQUEST_SIZES)
    response = _stub(channel).StreamingInputCall(requests, timeout=TIMEOUT)
    assert response.aggregated_payload_size == 74922, response.aggregated_payload_size


def server_streaming(channel: grpc.Channel) -> None:
    request = messages_pb2.StreamingOutputCallRequest(response_type=messages_pb2.COMPRESSABLE)
    for size in RESPONSE_SIZES:
        request.response_parameters.add(size=size)
    responses = list(_stub(channel).StreamingOutputCall(request, timeout=TIMEOUT))
    assert len(responses) == len(RESPONSE_SIZES), f"{len(responses)} responses"
    for response, size in zip(responses, RESPONSE_SIZES):
        _assert_body(response.payload, size)


def ping_pong(channel: grpc.Channel) -> None:
    with _Pipe() as pipe:
        responses = _stub(channel).FullDuplexCall(pipe, timeout=TIMEOUT)
        for request_size, response_size in zip(REQUEST_SIZES, RESPONSE_SIZES):
            pipe.add(_streaming_request(response_size, request_size))
            _assert_body(next(responses).payload, response_size)
        pipe.close()
        leftover = list(responses)
        assert not leftover, f"{len(leftover)} responses after the fourth"
        assert responses.code() == grpc.StatusCode.OK


def empty_stream(channel: grpc.Channel) -> None:
    responses = list(_stub(channel).FullDuplexCall(iter(()), timeout=TIMEOUT))
    assert responses == [], f"{len(responses)} responses to an empty stream"


def cancel_after_begin(channel: grpc.Channel) -> None:
    with _Pipe() as pipe:
        future = _stub(channel).StreamingInputCall.future(pipe, timeout=TIMEOUT)
        future.cancel()
        assert future.cancelled(), "the call was not cancelled"
        assert future.code() == grpc.StatusCode.CANCELLED, future.code()


def cancel_after_first_response(channel: grpc.Channel) -> None:
    with _Pipe() as pipe:
        responses = _stub(channel).FullDuplexCall(pipe, timeout=TIMEOUT)
        pipe.add(_streaming_request(31415, 27182))
        _assert_body(next(responses).payload, 31415)
        responses.cancel()
        _fails_with(lambda: next(responses), grpc.StatusCode.CANCELLED)


def timeout_on_sleeping_server(channel: grpc.Channel) -> None:
    with _Pipe() as pipe:
        responses = _stub(channel).FullDuplexCall(pipe, timeout=0.001)
        pipe.add(_streaming_request(None, 27182))
        _fails_with(lambda: next(responses), grpc.StatusCode.DEADLINE_EXCEEDED)


def custom_metadata(channel: grpc.Channel) -> None:
    metadata = (ECHO_INITIAL, ECHO_TRAILING)
    request = messages_pb2.SimpleRequest(
        response_size=LARGE_RESPONSE_SIZE, payload=_zeros(LARGE_REQUEST_SIZE))
    _, call = _stub(channel).UnaryCall.with_call(request, metadata=metadata, timeout=TIMEOUT)
    _assert_echoed(call)

    with _Pipe() as pipe:
        responses = _stub(channel).FullDuplexCall(pipe, metadata=metadata, timeout=TIMEOUT)
        pipe.add(_streaming_request(LARGE_RESPONSE_SIZE, LARGE_REQUEST_SIZE))
        pipe.close()
        assert len(list(responses)) == 1
        _assert_echoed(responses)


def status_code_and_message(channel: grpc.Channel) -> None:
    _echo_status_case(channel, "test status message", duplex=True)


def special_status_message(channel: grpc.Channel) -> None:
    _echo_status_case(channel, SPECIAL_MESSAGE, duplex=False)


def _echo_status_case(channel: grpc.Channel, message: str, duplex: bool) -> None:
    status = messages_pb2.EchoStatus(code=2, message=message)
    unary = messages_pb2.SimpleRequest(response_status=status)
    _fails_with(lambda: _stub(channel).UnaryCall(unary, timeout=TIMEOUT),
                grpc.StatusCode.UNKNOWN, message)
    if not duplex:
        return
    duplex_request = messages_pb2.StreamingOutputCallRequest(response_status=status)
    responses = _stub(channel).FullDuplexCall(iter([duplex_request]), timeout=TIMEOUT)
    _fails_with(lambda: list(responses), grpc.StatusCode.UNKNOWN, message)


def unimplemented_method(channel: grpc.Channel) -> None:
    _fails_with(lambda: _stub(channel).UnimplementedCall(empty_pb2.Empty(), timeout=TIMEOUT),
                grpc.StatusCode.UNIMPLEMENTED)


def unimplemented_service(channel: grpc.Channel) -> None:
    stub = test_pb2_grpc.UnimplementedServiceStub(channel)
    _fails_with(lambda: stub.UnimplementedCall(empty_pb2.Empty(), timeout=TIMEOUT),
                grpc.StatusCode.UNIMPLEMENTED)


ALL_CASES: dict[str, Callable[[grpc.Channel], None]] = {
    case.__name__: case for case in (
        empty_unary, large_unary, client_streaming, server_streaming, ping_pong,
        empty_stream, cancel_after_begin, cancel_after_first_response,
        timeout_on_sleeping_server, custom_metadata, status_code_and_message,
        special_status_message, unimplemented_method, unimplemented_service,
    )
}
