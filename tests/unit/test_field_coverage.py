"""No field without behaviour: every field of every meshapi.v1 resource message is
either exercised by a named behaviour test (listed below: the test exists and its
module names the field) or refused by validation with "not supported yet"
(meshgrpc/config/rules_unsupported.py). A new field fails this test until it
gets one or the other."""

from __future__ import annotations

import ast
import pathlib

import pytest
from google.protobuf import json_format

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config import validate
from meshgrpc.config.rules_common import Context
from meshgrpc.config.rules_unsupported import UNSUPPORTED, refusing

TESTS = pathlib.Path(__file__).resolve().parents[1]

IT = "integration/"
RES = "integration/test_resilience.py::"
RELAY = "unit/test_relay_resilience.py::"
BAL = "integration/test_balancing.py::"
ROUTER = "unit/test_router.py::"
CLUSTER = "unit/test_cluster.py::"
OUTLIER = "unit/test_outlier.py::"
PROXYLESS = "integration/test_proxyless.py::"
WRR = "unit/test_balancer_weighted_round_robin.py::"
PREQUAL = "unit/test_balancer_prequal.py::"
PENALTY = "unit/test_balancer_failure_penalty.py::"
LOADS = "integration/test_load_reports.py::"
AUTHZ = "unit/test_authz.py::"
IDENTITY = "integration/test_identity.py::"
MTLS = "integration/test_mtls.py::"

# field (message.field) -> tests that show what it does
BEHAVIOUR: dict[str, tuple[str, ...]] = {
    "Cluster.name": (IT + "test_proxy_calls.py::test_cluster_without_endpoints_is_unavailable_naming_the_cluster",),
    "Cluster.lb_policy": (BAL + "test_round_robin_3_to_1_is_exact_and_interleaved",
                          BAL + "test_ring_hash_keeps_keys_and_remaps_few_when_an_endpoint_goes"),
    "Cluster.peak_ewma": ("unit/test_balancer_peak_ewma.py::test_new_endpoint_starts_at_default_rtt_from_config",),
    "Cluster.least_request": ("unit/test_balancer_least_request.py::test_bias_zero_ignores_load",),
    "Cluster.ring_hash": ("unit/test_balancer_ring_hash.py::test_ring_has_at_least_the_minimum_entries_and_follows_weights",),
    "Cluster.health_check": (BAL + "test_not_serving_endpoint_leaves_rotation_and_returns_when_serving",),
    "Cluster.outlier_detection": (BAL + "test_endpoint_failing_every_call_is_ejected_after_consecutive_failures",),
    "Cluster.circuit_breaker": (RES + "test_max_requests_fails_the_calls_over_it_at_once",),
    "Cluster.connect_timeout": (RES + "test_connect_timeout_bounds_a_connect_that_hangs",),
    "Cluster.panic_threshold_percent": ("unit/test_balancer_selection.py::"
                                        "test_panic_threshold_is_configurable_and_zero_disables_it",),
    "Cluster.retry_budget": (RES + "test_retry_budget_bounds_the_extra_load_on_the_backends",
                             RELAY + "test_budget_spent_lets_the_original_failure_through"),
    "Cluster.weighted_round_robin": (WRR + "test_weights_are_qps_over_utilization_so_utilization_09_gets_a_third_of_03",
                                     LOADS + "test_weighted_round_robin_follows_out_of_band_reports_and_forgets_stale_ones"),
    "WeightedRoundRobin.blackout_period": (WRR + "test_blackout_period_holds_a_weight_back_until_the_endpoint_reported_that_long",),
    "WeightedRoundRobin.weight_expiration_period": (
        WRR + "test_weight_expires_after_the_expiration_period_and_the_blackout_applies_again",
        LOADS + "test_weighted_round_robin_follows_out_of_band_reports_and_forgets_stale_ones"),
    "WeightedRoundRobin.weight_update_period": (WRR + "test_weights_are_recomputed_every_weight_update_period",),
    "WeightedRoundRobin.error_utilization_penalty": (
        WRR + "test_error_utilization_penalty_adds_the_error_rate_to_utilization",),
    "Cluster.prequal": (PREQUAL + "test_answers_arrive_asynchronously_and_route_the_next_calls",
                        LOADS + "test_prequal_balances_on_what_probes_answer",
                        LOADS + "test_prequal_without_orca_balances_on_its_own_view"),
    "Prequal.probes_per_call": (PREQUAL + "test_each_call_probes_probes_per_call_distinct_endpoints",),
    "Prequal.pool_size": (PREQUAL + "test_pool_keeps_one_answer_per_endpoint_and_at_most_pool_size",),
    "Prequal.max_probe_age": (PREQUAL + "test_answers_older_than_max_probe_age_are_not_used",),
    "Prequal.max_reuse": (PREQUAL + "test_an_answer_routes_at_most_its_reuse_budget_and_counts_each_call",),
    "Prequal.hot_rif_quantile": (PREQUAL + "test_hot_rif_quantile_is_read_from_config",),
    "Prequal.max_probes_per_second": (PREQUAL + "test_max_probes_per_second_caps_the_probes_and_counts_the_rest",),
    "Cluster.out_of_band_load_reports": (
        LOADS + "test_weighted_round_robin_follows_out_of_band_reports_and_forgets_stale_ones",
        "unit/test_load_report_streams.py::test_sync_follows_config_streams_start_stop_and_restart_on_a_new_interval"),
    "OutOfBandLoadReports.interval": (
        "unit/test_load_report_streams.py::test_reports_reach_the_endpoint_and_the_interval_is_asked_for",),
    "Cluster.failure_penalty": (PENALTY + "test_endpoint_failing_fast_loses_its_traffic_to_the_penalty",
                                "integration/test_pushback.py::test_an_endpoint_that_pushes_back_500ms_gets_no_calls_for_500ms"),
    "FailurePenalty.penalty": (PENALTY + "test_endpoint_failing_fast_loses_its_traffic_to_the_penalty",),
    "FailurePenalty.decay": (PENALTY + "test_penalty_decay_is_read_from_config",),
    "FailurePenalty.max_pushback": (PENALTY + "test_pushback_is_capped_by_max_pushback_and_zero_ignores_it",),
    "Cluster.transport": (MTLS + "test_two_services_call_each_other_over_mutual_tls_and_plaintext_is_refused",),
    "Transport.mode": (MTLS + "test_two_services_call_each_other_over_mutual_tls_and_plaintext_is_refused",
                       MTLS + "test_a_proxy_without_a_workload_certificate_answers_unavailable_for_a_mutual_tls_cluster"),
    "Transport.peer_identity": (MTLS + "test_peer_identity_names_who_the_endpoints_must_be",
                                MTLS + "test_an_endpoint_with_the_wrong_identity_is_refused_and_calls_go_to_a_correct_one"),
    "RetryBudget.retry_ratio": (RES + "test_retry_budget_bounds_the_extra_load_on_the_backends",),
    "RetryBudget.min_retries_per_second": (RES + "test_retry_budget_bounds_the_extra_load_on_the_backends",),
    "RetryBudget.ttl": (RES + "test_retry_budget_bounds_the_extra_load_on_the_backends",),
    "PeakEwma.decay": ("unit/test_balancer_peak_ewma.py::test_new_endpoint_starts_at_default_rtt_from_config",),
    "PeakEwma.default_rtt": ("unit/test_balancer_peak_ewma.py::test_new_endpoint_starts_at_default_rtt_from_config",),
    "LeastRequest.active_request_bias": ("unit/test_balancer_least_request.py::test_bias_zero_ignores_load",),
    "RingHash.minimum_ring_size": ("unit/test_balancer_ring_hash.py::"
                                   "test_ring_has_at_least_the_minimum_entries_and_follows_weights",),
    "HealthCheck.interval": (BAL + "test_not_serving_endpoint_leaves_rotation_and_returns_when_serving",),
    "HealthCheck.timeout": ("unit/test_health.py::test_unreachable_endpoint_becomes_unhealthy",),
    "HealthCheck.unhealthy_threshold": (BAL + "test_not_serving_endpoint_leaves_rotation_and_returns_when_serving",),
    "HealthCheck.healthy_threshold": (BAL + "test_not_serving_endpoint_leaves_rotation_and_returns_when_serving",),
    "HealthCheck.service_name": ("unit/test_health.py::test_service_name_is_checked",),
    "HealthCheck.jitter_fraction": ("unit/test_health.py::test_settings_defaults",),
    "OutlierDetection.consecutive_failures": (BAL + "test_endpoint_failing_every_call_is_ejected_after_consecutive_failures",),
    "OutlierDetection.interval": (OUTLIER + "test_sweep_runs_on_the_interval_through_tick",),
    "OutlierDetection.base_ejection_time": (OUTLIER + "test_ejection_time_grows_with_each_ejection_and_is_capped",),
    "OutlierDetection.max_ejection_time": (OUTLIER + "test_ejection_time_grows_with_each_ejection_and_is_capped",),
    "OutlierDetection.max_ejection_percent": (OUTLIER + "test_cluster_never_ejects_more_than_max_percent",),
    "OutlierDetection.failure_status_codes": (OUTLIER + "test_only_configured_codes_count",),
    "OutlierDetection.success_rate_stdev_factor": (OUTLIER + "test_config_fields_reach_the_decisions",),
    "OutlierDetection.success_rate_request_volume": (OUTLIER + "test_config_fields_reach_the_decisions",),
    "OutlierDetection.failure_percentage_threshold": (OUTLIER + "test_config_fields_reach_the_decisions",),
    "CircuitBreaker.max_requests": (RES + "test_max_requests_fails_the_calls_over_it_at_once",),
    "CircuitBreaker.max_retries": (RELAY + "test_max_retries_bounds_retries_in_flight",),
    "CircuitBreaker.max_pending_requests": (RELAY + "test_max_pending_requests_refuses_calls_that_would_wait_for_a_connection",),
    "CircuitBreaker.max_connections_per_endpoint": (
        RES + "test_max_connections_per_endpoint_caps_the_pool_and_calls_wait_for_a_stream",),
    "EndpointSet.cluster": (IT + "test_proxy_admin.py::test_admin_pages_follow_config_and_calls",),
    "EndpointSet.endpoints": (IT + "test_proxy_admin.py::test_admin_pages_follow_config_and_calls",),
    "Endpoint.address": (IT + "test_proxy_admin.py::test_admin_pages_follow_config_and_calls",),
    "Endpoint.weight": (BAL + "test_round_robin_3_to_1_is_exact_and_interleaved",),
    "Endpoint.zone": ("unit/test_balancer_selection.py::test_local_zone_is_preferred",),
    "Endpoint.metadata": (CLUSTER + "test_endpoint_fields_from_config",),
    "Endpoint.health_status": (CLUSTER + "test_unhealthy_and_draining_endpoints_are_listed_but_never_picked",),
    "RouteConfig.name": (IT + "test_proxy_config_changes.py::test_route_changes_under_load_lose_no_call",),
    "RouteConfig.virtual_hosts": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "VirtualHost.name": (ROUTER + "test_virtual_host_precedence",),
    "VirtualHost.domains": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "VirtualHost.routes": (ROUTER + "test_first_match_wins_across_indexed_and_scanned_routes",),
    "Route.name": (ROUTER + "test_route_action_fields",),
    "Route.match": (ROUTER + "test_path_exact_prefix_and_regex",),
    "Route.route": (ROUTER + "test_route_action_fields",),
    "RouteMatch.path": (ROUTER + "test_path_exact_prefix_and_regex",),
    "RouteMatch.prefix": (ROUTER + "test_path_exact_prefix_and_regex",),
    "RouteMatch.regex": (IT + "test_regex_route.py::test_an_evil_path_against_a_backtracking_shaped_regex_is_answered_fast",),
    "RouteMatch.headers": (ROUTER + "test_all_header_matchers_must_hold_and_routes_with_headers_keep_their_order",),
    "HeaderMatcher.name": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.exact": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.prefix": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.suffix": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.regex": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.present": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "HeaderMatcher.invert": (ROUTER + "test_header_matcher_kinds_and_invert",),
    "RouteAction.cluster": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "RouteAction.weighted_clusters": (ROUTER + "test_weighted_clusters_split_by_weight",),
    "RouteAction.keep_load_reports": (
        LOADS + "test_the_relay_takes_each_calls_report_and_strips_it_unless_the_route_keeps_it",),
    "RouteAction.timeout": ("unit/test_relay_protocol.py::test_grpc_timeout_is_capped_by_route_and_propagated_as_remaining_time",),
    "RouteAction.retry_policy": (RES + "test_killed_endpoint_with_retries_on_loses_no_call",),
    "RouteAction.request_headers_to_add": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "RouteAction.request_headers_to_remove": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "RouteAction.hash_policy": (BAL + "test_ring_hash_keeps_keys_and_remaps_few_when_an_endpoint_goes",),
    "RouteAction.hedge_policy": (RES + "test_hedging_cuts_the_tail_of_a_slow_endpoint_and_cancels_every_loser",),
    "RouteAction.idle_timeout": (RELAY + "test_idle_stream_is_ended_with_deadline_exceeded",),
    "RouteAction.retry_buffer_limit": (RELAY + "test_a_request_over_the_replay_buffer_is_not_retried",),
    "RouteAction.rate_limit": (RES + "test_rate_limit_lets_the_rate_through_and_pushes_back_the_rest",),
    "RouteAction.fault": (RES + "test_abort_ten_percent_and_the_header_gate",),
    "RouteAction.mirror": (RES + "test_mirroring_to_a_stopped_shadow_changes_nothing_for_the_real_calls",),
    "ClusterWeight.name": (ROUTER + "test_weighted_clusters_split_by_weight",),
    "ClusterWeight.weight": (ROUTER + "test_weighted_clusters_split_by_weight",),
    "RetryPolicy.retry_on": (RELAY + "test_reset_before_headers_is_retried_only_when_the_policy_names_it",),
    "RetryPolicy.num_retries": (RES + "test_flaky_endpoint_with_two_retries_costs_the_client_under_one_percent",),
    "RetryPolicy.per_try_timeout": (RES + "test_per_try_timeout_moves_a_slow_attempt_to_a_fast_endpoint",),
    "RetryPolicy.retry_back_off": (RELAY + "test_back_off_never_exceeds_max_interval",),
    "RetryBackOff.base_interval": (RELAY + "test_deadline_covers_retries_and_back_off",),
    "RetryBackOff.max_interval": (RELAY + "test_back_off_never_exceeds_max_interval",),
    "HedgePolicy.hedge_after": (RES + "test_hedging_cuts_the_tail_of_a_slow_endpoint_and_cancels_every_loser",),
    "HedgePolicy.max_attempts": (RELAY + "test_hedges_stop_at_max_attempts",),
    "HedgePolicy.hedge_on_statuses": (RELAY + "test_hedge_on_statuses_decides_which_failures_let_the_other_attempts_go_on",),
    "RateLimit.requests_per_second": (RES + "test_rate_limit_lets_the_rate_through_and_pushes_back_the_rest",),
    "RateLimit.burst": (RES + "test_rate_limit_lets_the_rate_through_and_pushes_back_the_rest",),
    "RateLimit.key_header": (RELAY + "test_rate_limit_key_header_gives_each_caller_a_bucket_and_max_keys_bounds_them",),
    "RateLimit.max_keys": (RELAY + "test_rate_limit_key_header_gives_each_caller_a_bucket_and_max_keys_bounds_them",),
    "Fault.delay": (RELAY + "test_fault_abort_and_delay_with_a_header_gate",),
    "Fault.abort": (RES + "test_abort_ten_percent_and_the_header_gate",),
    "Fault.header_gate": (RES + "test_abort_ten_percent_and_the_header_gate",),
    "FaultDelay.fixed_delay": (RELAY + "test_fault_abort_and_delay_with_a_header_gate",),
    "FaultDelay.percent": (RELAY + "test_fault_abort_and_delay_with_a_header_gate",),
    "FaultAbort.grpc_status": (RES + "test_abort_ten_percent_and_the_header_gate",),
    "FaultAbort.http_status": (RELAY + "test_plain_http_abort_gets_the_http_status",),
    "FaultAbort.percent": (RES + "test_abort_ten_percent_and_the_header_gate",),
    "Mirror.cluster": (RES + "test_mirroring_to_a_stopped_shadow_changes_nothing_for_the_real_calls",),
    "Mirror.percent": (RELAY + "test_mirror_percent_copies_that_share_of_calls",),
    "Mirror.max_in_flight": (RELAY + "test_mirror_copies_the_call_to_the_shadow_and_its_silence_costs_the_call_nothing",),
    "HeaderValue.name": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "HeaderValue.value": (IT + "test_proxy_calls.py::test_virtual_host_by_authority_and_request_header_rewrites",),
    "HashPolicy.header": (BAL + "test_ring_hash_keeps_keys_and_remaps_few_when_an_endpoint_goes",),
    "MeshConfig.clusters": (IT + "test_control_plane.py::test_apply_get_delete_through_the_cli",),
    "MeshConfig.endpoints": (IT + "test_control_plane.py::test_apply_get_delete_through_the_cli",),
    "MeshConfig.routes": (IT + "test_proxy_admin.py::test_admin_pages_follow_config_and_calls",),
    "MeshConfig.listeners": (PROXYLESS + "test_listeners_are_got_and_deleted_and_keep_their_route_config",),
    "Listener.name": (PROXYLESS + "test_round_robin_reaches_every_endpoint_of_the_cluster",
                      "unit/test_proxyless_listener.py::test_listener_name_is_required_and_unique"),
    "Listener.route_config": (PROXYLESS + "test_listeners_are_got_and_deleted_and_keep_their_route_config",
                              "unit/test_proxyless_listener.py::"
                              "test_listener_route_config_must_name_an_existing_route_config"),
    "RouteConfig.services": (IDENTITY + "test_a_workload_stream_carries_only_what_its_service_may_see",),
    # Authorization policies: what the compiled evaluator decides (the inbound data
    # path that enforces its decisions is the next step; it is tested there).
    "MeshConfig.authorization_policies": (IDENTITY + "test_authorization_policies_are_applied_got_and_deleted",),
    "AuthorizationPolicy.name": (AUTHZ + "test_deny_comes_first_then_any_allow",),
    "AuthorizationPolicy.service": (AUTHZ + "test_no_policy_for_the_service_allows_everything",),
    "AuthorizationPolicy.action": (AUTHZ + "test_deny_comes_first_then_any_allow",),
    "AuthorizationPolicy.rules": (AUTHZ + "test_an_allow_policy_lets_only_its_matches_through",),
    "AuthorizationPolicy.dry_run": (AUTHZ + "test_a_dry_run_policy_lets_calls_pass_and_names_itself_when_it_would_deny",),
    "AuthorizationRule.from": (AUTHZ + "test_star_callers_include_the_unauthenticated_but_prefixes_do_not",),
    "AuthorizationRule.to": (AUTHZ + "test_deny_comes_first_then_any_allow",),
    "AuthorizationRule.when": (AUTHZ + "test_deny_comes_first_then_any_allow",),
}


def resource_fields() -> list[str]:
    return [f"{m.name}.{f.name}" for m in pb.DESCRIPTOR.message_types_by_name.values() for f in m.fields]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_MODULES: dict[str, tuple[str, set[str]]] = {}


def _module(path: str) -> tuple[str, set[str]]:
    """(source, names of its test functions) of a test module, relative to tests/."""
    if path not in _MODULES:
        source = (TESTS / path).read_text()
        names = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
        _MODULES[path] = (source, names)
    return _MODULES[path]


@pytest.mark.parametrize("field", resource_fields())
def test_every_field_has_behaviour_or_is_refused(field):
    message, name = field.split(".")
    if (f"meshapi.v1.{message}", name) in UNSUPPORTED:
        return  # test_unsupported_fields_are_refused checks these
    tests = BEHAVIOUR.get(field)
    assert tests, f"{field} is accepted by validation but no behaviour test is named for it"
    for test in tests:
        path, function = test.split("::")
        source, names = _module(path)
        assert function in names, f"{field}: {test} does not exist"
        assert name in source or _camel(name) in source, f"{field}: {path} never mentions {name!r}"


def test_no_stale_entries():
    assert sorted(set(BEHAVIOUR) - set(resource_fields())) == []


def test_unsupported_fields_are_refused():
    """Each field listed as not supported yet is refused with that message when set."""
    for message, field in sorted(UNSUPPORTED):
        errors = validate.validate_mesh(_mesh_setting(message, field))
        assert any(e.message == f"{field} is not supported yet" for e in errors), f"{message}.{field}: {errors}"


def test_the_refusing_rule_names_the_field_path_wherever_it_is_set():
    rule = refusing(frozenset({("meshapi.v1.RouteAction", "mirror"), ("meshapi.v1.Endpoint", "zone")}))
    mesh = _minimal_mesh()
    mesh.routes[0].virtual_hosts[0].routes[0].route.mirror.cluster = "c"
    mesh.endpoints[0].endpoints[0].zone = "z"
    assert [str(e) for e in rule(mesh, "", Context())] == [
        "endpoints[0].endpoints[0].zone: zone is not supported yet",
        "routes[0].virtual_hosts[0].routes[0].route.mirror: mirror is not supported yet",
    ]
    assert list(rule(_minimal_mesh(), "", Context())) == []


def _minimal_mesh() -> pb.MeshConfig:
    return json_format.ParseDict({
        "clusters": [{"name": "c"}],
        "endpoints": [{"cluster": "c", "endpoints": [{"address": "127.0.0.1:1"}]}],
        "routes": [{"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "c"}}]}]}],
    }, pb.MeshConfig())


def _mesh_setting(message: str, field: str) -> pb.MeshConfig:
    """The minimal mesh with `field` of its (first) `message` set."""
    mesh = _minimal_mesh()
    holder = _PLACEMENT[message.rsplit(".", 1)[-1]](mesh)
    descriptor = holder.DESCRIPTOR.fields_by_name[field]
    if descriptor.message_type is not None:
        target = getattr(holder, field)
        (target.add() if descriptor.is_repeated else target).SetInParent()
    elif descriptor.is_repeated:
        getattr(holder, field).append(_scalar(descriptor))
    else:
        setattr(holder, field, _scalar(descriptor))
    return mesh


def _scalar(descriptor):
    if descriptor.type == descriptor.TYPE_STRING:
        return "x"
    return True if descriptor.type == descriptor.TYPE_BOOL else 1


# Where a message of each type sits in the minimal mesh (extend it for the next unsupported field).
_PLACEMENT = {
    "Cluster": lambda m: m.clusters[0],
    "EndpointSet": lambda m: m.endpoints[0],
    "Endpoint": lambda m: m.endpoints[0].endpoints[0],
    "RouteConfig": lambda m: m.routes[0],
    "VirtualHost": lambda m: m.routes[0].virtual_hosts[0],
    "Route": lambda m: m.routes[0].virtual_hosts[0].routes[0],
    "RouteAction": lambda m: m.routes[0].virtual_hosts[0].routes[0].route,
}
