"""Validation rules for the resilience policies of route actions: retries and
their back-off, hedging, idle timeouts, the replay buffer, rate limits, fault
injection and mirroring."""

from __future__ import annotations

from collections.abc import Iterator

from meshapi.v1 import resources_pb2 as pb
from meshgrpc import grpc_codes
from meshgrpc.config.rules_common import (
    DAY, MINUTE, Context, duration, fmt_seconds, in_range, missing_cluster, name_problem,
)
from meshgrpc.config.rules_routes import header_name_problem
from meshgrpc.config.specs.common import seconds
from meshgrpc.config.specs.routes import RETRY_CONDITIONS, RetrySpec
from meshgrpc.config.specs.common import default_of
from meshgrpc.errors import FieldError

NUM_RETRIES_MAX = 10
HEDGE_ATTEMPTS = (2, 5)
RETRY_BUFFER_MAX = 16 << 20
RATE_MAX = 1_000_000.0
KEYS_MAX = 1_000_000
MIRROR_IN_FLIGHT_MAX = 100_000


def _statuses(texts, path: str, what: str, conditions: frozenset[str] = frozenset()) -> Iterator[FieldError]:
    for i, text in enumerate(texts):
        if text in conditions:
            continue
        if grpc_codes.parse(text) in (None, 0):
            extra = f", or one of {', '.join(sorted(conditions))}" if conditions else ""
            yield FieldError(f"{path}[{i}]", f'"{text}" is not {what} (a gRPC status name like UNAVAILABLE '
                                             f'or a number 1-16{extra})')


def retry_policy(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.HasField("retry_policy"):
        return
    policy, rpath = a.retry_policy, f"{path}.retry_policy"
    yield from _statuses(policy.retry_on, f"{rpath}.retry_on", "a retry condition", RETRY_CONDITIONS)
    yield from in_range(policy, "num_retries", rpath, 0, NUM_RETRIES_MAX)
    yield from duration(policy, "per_try_timeout", rpath, DAY)
    if policy.HasField("per_try_timeout") and a.HasField("timeout"):
        per_try, whole = seconds(policy.per_try_timeout), seconds(a.timeout)
        if per_try > whole > 0:
            yield FieldError(f"{rpath}.per_try_timeout",
                             f"per_try_timeout {fmt_seconds(per_try)} exceeds the route's timeout {fmt_seconds(whole)}")
    if policy.HasField("retry_back_off"):
        yield from _back_off(policy.retry_back_off, f"{rpath}.retry_back_off")


def _back_off(b: pb.RetryBackOff, path: str) -> Iterator[FieldError]:
    yield from duration(b, "base_interval", path, MINUTE)
    yield from duration(b, "max_interval", path, MINUTE)
    base = seconds(b.base_interval) if b.HasField("base_interval") else default_of(RetrySpec, "base_interval")
    most = seconds(b.max_interval) if b.HasField("max_interval") else default_of(RetrySpec, "max_interval")
    if 0 < base < 0.001:
        yield FieldError(f"{path}.base_interval", f"base_interval {fmt_seconds(base)} is below 1ms")
    if 0 < most < base:
        yield FieldError(f"{path}.max_interval",
                         f"max_interval {fmt_seconds(most)} is shorter than base_interval {fmt_seconds(base)}")


def hedge_policy(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.HasField("hedge_policy"):
        return
    hpath = f"{path}.hedge_policy"
    if a.HasField("retry_policy"):
        yield FieldError(hpath, "hedge_policy and retry_policy cannot both be set (gRFC A6)")
    h = a.hedge_policy
    if not h.HasField("hedge_after"):
        yield FieldError(f"{hpath}.hedge_after", "hedge_after is required")
    yield from duration(h, "hedge_after", hpath, MINUTE)
    yield from in_range(h, "max_attempts", hpath, *HEDGE_ATTEMPTS)
    yield from _statuses(h.hedge_on_statuses, f"{hpath}.hedge_on_statuses", "a gRPC status")


def idle_timeout(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from duration(a, "idle_timeout", path, DAY)


def retry_buffer_limit(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from in_range(a, "retry_buffer_limit", path, 0, RETRY_BUFFER_MAX, " bytes")


def rate_limit(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.HasField("rate_limit"):
        return
    r, rpath = a.rate_limit, f"{path}.rate_limit"
    if not 0 < r.requests_per_second <= RATE_MAX:  # also false for NaN
        yield FieldError(f"{rpath}.requests_per_second",
                         f"{r.requests_per_second:g} is out of range: more than 0, at most {RATE_MAX:g}")
    if r.HasField("burst") and r.burst.value < 1:
        yield FieldError(f"{rpath}.burst", "burst must be at least 1")
    if r.key_header and (problem := header_name_problem(r.key_header)):
        yield FieldError(f"{rpath}.key_header", problem)
    yield from in_range(r, "max_keys", rpath, 1, KEYS_MAX)


def fault(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.HasField("fault"):
        return
    f, fpath = a.fault, f"{path}.fault"
    if not f.HasField("delay") and not f.HasField("abort"):
        yield FieldError(fpath, "set delay, abort or both")
    if f.HasField("delay"):
        dpath = f"{fpath}.delay"
        if not f.delay.HasField("fixed_delay"):
            yield FieldError(f"{dpath}.fixed_delay", "fixed_delay is required")
        yield from duration(f.delay, "fixed_delay", dpath, MINUTE)
        yield from in_range(f.delay, "percent", dpath, 0, 100, " (a percentage)")
    if f.HasField("abort"):
        yield from _abort(f.abort, f"{fpath}.abort")
    if f.header_gate and (problem := header_name_problem(f.header_gate)):
        yield FieldError(f"{fpath}.header_gate", problem)


def _abort(abort: pb.FaultAbort, path: str) -> Iterator[FieldError]:
    which = abort.WhichOneof("error")
    if which is None:
        yield FieldError(path, "set exactly one of grpc_status and http_status")
    elif which == "grpc_status" and grpc_codes.parse(abort.grpc_status) in (None, 0):
        yield FieldError(f"{path}.grpc_status", f'"{abort.grpc_status}" is not a gRPC error status '
                                               f'(a name like UNAVAILABLE or a number 1-16)')
    elif which == "http_status" and not 200 <= abort.http_status <= 599:
        yield FieldError(f"{path}.http_status", f"{abort.http_status} is out of range 200-599")
    yield from in_range(abort, "percent", path, 0, 100, " (a percentage)")


def mirror(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.HasField("mirror"):
        return
    m, mpath = a.mirror, f"{path}.mirror"
    if problem := name_problem(m.cluster, "cluster"):
        yield FieldError(f"{mpath}.cluster", problem)
    elif problem := missing_cluster(m.cluster, ctx):
        yield FieldError(f"{mpath}.cluster", problem)
    yield from in_range(m, "percent", mpath, 0, 100, " (a percentage)")
    yield from in_range(m, "max_in_flight", mpath, 1, MIRROR_IN_FLIGHT_MAX)
