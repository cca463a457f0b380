"""Backend load reports on the proxy's side: parsing at the edge, the relay's
trailer hook (read, and strip unless the route keeps it), each endpoint's latest
report and its age."""

from __future__ import annotations

import base64

from xds.data.orca.v3.orca_load_report_pb2 import OrcaLoadReport

from meshgrpc.proxy.orca.endpoint_load import EndpointLoad
from meshgrpc.proxy.orca.report import LoadReport, decode_trailer, parse, take_load_report
from tests.unit.balancer_helpers import FakeClock, endpoint

TRAILER = b"endpoint-load-metrics-bin"


def orca(**fields) -> bytes:
    return OrcaLoadReport(**fields).SerializeToString()


def test_report_fields_and_named_metrics_are_read():
    report = parse(orca(cpu_utilization=0.5, application_utilization=0.25, rps_fractional=120.5, eps=2,
                        named_metrics={"rif": 7, "latency_ms": 12.5, "other": 1}))
    assert report == LoadReport(cpu_utilization=0.5, application_utilization=0.25, qps=120.5, eps=2.0,
                                rif=7.0, latency_s=0.0125)
    assert report.utilization == 0.25  # application_utilization wins when set (gRFC A58)
    assert parse(orca(cpu_utilization=0.5)).utilization == 0.5
    assert parse(orca(rps=30)).qps == 30.0  # the old integer field when rps_fractional is unset


def test_missing_named_metrics_are_none_and_nonsense_numbers_are_zero():
    report = parse(orca(cpu_utilization=float("nan"), rps_fractional=-5, eps=float("inf")))
    assert (report.rif, report.latency_s) == (None, None)
    assert (report.cpu_utilization, report.qps, report.eps) == (0.0, 0.0, 0.0)


def test_bytes_that_do_not_parse_are_no_report():
    assert parse(b"\xff\xff\xff") is None
    assert decode_trailer(b"***not base64***") is None


def test_trailer_value_is_base64_padded_or_not():
    raw = orca(rps_fractional=10, named_metrics={"rif": 3})
    padded = base64.b64encode(raw)
    assert decode_trailer(padded).rif == 3.0
    assert decode_trailer(padded.rstrip(b"=")).rif == 3.0  # what grpcio sends


def test_trailer_report_is_recorded_and_stripped_unless_the_route_keeps_it():
    clock = FakeClock()
    ep = endpoint("a", clock=clock)
    value = base64.b64encode(orca(rps_fractional=50, application_utilization=0.5, named_metrics={"rif": 2}))
    trailers = [(b"grpc-status", b"0"), (TRAILER, value), (b"x-app", b"1")]
    assert take_load_report(trailers, ep, keep=False) == [(b"grpc-status", b"0"), (b"x-app", b"1")]
    assert ep.stats.load.report.rif == 2.0 and ep.stats.load.received_at == clock()
    assert take_load_report(trailers, ep, keep=True) is trailers
    assert ep.stats.load.reports == 2


def test_trailers_without_a_report_pass_as_they_are():
    ep = endpoint("a", clock=FakeClock())
    trailers = [(b"grpc-status", b"0")]
    assert take_load_report(trailers, ep, keep=False) is trailers
    assert ep.stats.load.report is None


def test_a_report_that_does_not_parse_is_still_stripped():
    ep = endpoint("a", clock=FakeClock())
    assert take_load_report([(TRAILER, b"!!"), (b"grpc-status", b"0")], ep, keep=False) == [(b"grpc-status", b"0")]
    assert ep.stats.load.report is None


def test_endpoint_load_keeps_the_latest_report_and_its_age():
    load = EndpointLoad()
    assert load.fresh(0.0, 1.0) is None and load.describe(0.0) is None
    load.record(LoadReport(rif=1.0), 10.0)
    assert load.fresh(10.5, 1.0).rif == 1.0
    assert load.fresh(11.5, 1.0) is None  # older than max_age
    assert load.describe(10.25)["age_s"] == 0.25


def test_weight_run_starts_with_the_first_usable_report_and_ends_on_request():
    load = EndpointLoad()
    load.record(LoadReport(qps=10.0), 1.0)  # no utilization: no weight can come of it
    assert load.weighted is None and load.weighted_since is None
    load.record(LoadReport(qps=10.0, cpu_utilization=0.5), 2.0)
    load.record(LoadReport(qps=12.0, cpu_utilization=0.5), 3.0)
    assert (load.weighted_since, load.weighted_at, load.weighted.qps) == (2.0, 3.0, 12.0)
    load.end_run()
    load.record(LoadReport(qps=12.0, cpu_utilization=0.5), 4.0)
    assert load.weighted_since == 4.0
