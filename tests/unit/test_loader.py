"""loader.py: structural errors reported all at once with field paths, file
decoding (YAML, JSON, syntax errors), and dump() output that loads back."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config import loader, validate
from meshgrpc.errors import ConfigError

from tests.unit.test_validate import BASE, EXAMPLE, R0, R1, VH, cluster, endpoint, route, vhost

EP1 = "endpoints[0].endpoints[1]"


def structural_errors(mutate) -> list:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(ConfigError) as raised:
        loader.parse_document(doc, source="mesh.yaml")
    assert raised.value.source == "mesh.yaml"
    return raised.value.errors


# (case id, mutation, expected path, words the message must contain)
CASES = [
    ("unknown field names the closest", lambda d: cluster(d).update(lb_polcy="RANDOM"), "clusters[0].lb_polcy",
     'unknown field; did you mean "lb_policy"?'),
    ("unknown camelCase field", lambda d: route(d, 1)["route"].update(weightedCluster=[]),
     f"{R1}.route.weightedCluster", 'did you mean "weightedClusters"?'),
    ("unknown field with nothing close", lambda d: d.update(frobnicate=1), "frobnicate",
     "unknown field; MeshConfig has clusters, endpoints, routes, listeners, authorization_policies"),
    ("field given twice", lambda d: cluster(d).update(lbPolicy="RANDOM"), "clusters[0].lb_policy",
     'given twice (as "lb_policy" and "lbPolicy")'),
    ("integer as word", lambda d: d["endpoints"][0]["endpoints"][1].update(weight="three"), f"{EP1}.weight",
     'expected an integer, got "three"'),
    ("integer as fraction", lambda d: endpoint(d).update(weight=1.5), "endpoints[0].endpoints[0].weight",
     "expected an integer, got 1.5"),
    ("integer as bool", lambda d: endpoint(d).update(weight=True), "endpoints[0].endpoints[0].weight",
     "expected an integer, got true"),
    ("integer out of range", lambda d: endpoint(d).update(weight=-1), "endpoints[0].endpoints[0].weight",
     "out of range for uint32"),
    ("plain integer out of range", lambda d: cluster(d).update(ring_hash={"minimum_ring_size": 2**32}),
     "clusters[0].ring_hash.minimum_ring_size", "out of range for uint32"),
    ("bad enum name", lambda d: cluster(d).update(lb_policy="PEAK_EMWA"), "clusters[0].lb_policy",
     'unknown LbPolicy "PEAK_EMWA"; valid: ROUND_ROBIN, LEAST_REQUEST, PEAK_EWMA, RING_HASH, RANDOM; '
     'did you mean "PEAK_EWMA"?'),
    ("enum as bool", lambda d: endpoint(d).update(health_status=True), "endpoints[0].endpoints[0].health_status",
     "expected one of HEALTHY, UNHEALTHY, DRAINING"),
    ("duration in words", lambda d: route(d, 1)["route"].update(timeout="2 seconds"), f"{R1}.route.timeout",
     'expected a duration like "2s" or "0.030s", got "2 seconds"'),
    ("duration as number", lambda d: route(d, 1)["route"].update(timeout=2), f"{R1}.route.timeout",
     "durations are strings"),
    ("duration in milliseconds", lambda d: cluster(d).update(connect_timeout="250ms"),
     "clusters[0].connect_timeout", "expected a duration"),
    ("duration out of range", lambda d: cluster(d).update(connect_timeout="400000000000s"),
     "clusters[0].connect_timeout", "out of range"),
    ("oneof set twice", lambda d: route(d, 1).update(match={"prefix": "/a/", "path": "/a/b"}),
     f"{R1}.match.path", '"prefix" is already set; set only one of path, prefix, regex'),
    ("header oneof set twice", lambda d: route(d, 0)["match"]["headers"][0].update(present=True),
     f"{R0}.match.headers[0].present", '"exact" is already set'),
    ("map value not a string", lambda d: endpoint(d).update(metadata={"version": 2}),
     'endpoints[0].endpoints[0].metadata["version"]', "expected a string, got 2 (quote it)"),
    ("map not a mapping", lambda d: endpoint(d).update(metadata=["a"]), "endpoints[0].endpoints[0].metadata",
     "expected a mapping, got a list"),
    ("map key not a string", lambda d: endpoint(d).update(metadata={1: "a"}), "endpoints[0].endpoints[0].metadata[1]",
     "map keys must be strings"),
    ("wrapper as word", lambda d: cluster(d).update(panic_threshold_percent="half"),
     "clusters[0].panic_threshold_percent", 'expected an integer, got "half"'),
    ("wrapper as object", lambda d: cluster(d).update(panic_threshold_percent={"value": 5}),
     "clusters[0].panic_threshold_percent", "expected an integer, got a mapping"),
    ("double wrapper as word", lambda d: cluster(d).update(health_check={"jitter_fraction": "lots"}),
     "clusters[0].health_check.jitter_fraction", 'expected a number, got "lots"'),
    ("repeated given as scalar", lambda d: vhost(d).update(domains="*"), f"{VH}.domains",
     'expected a list, got "*" (write ["*"])'),
    ("null in a list", lambda d: vhost(d).update(domains=["*", None]), f"{VH}.domains[1]",
     "null is not allowed in a list"),
    ("message given as scalar", lambda d: d["clusters"].append("greeter"), "clusters[2]",
     'expected a mapping (Cluster), got "greeter"'),
    ("string given as number", lambda d: endpoint(d).update(zone=1), "endpoints[0].endpoints[0].zone",
     "expected a string, got 1 (quote it)"),
    ("bool given as string", lambda d: route(d, 0)["match"].update(headers=[{"name": "x-a", "present": "true"}]),
     f"{R0}.match.headers[0].present", 'expected true or false, got "true" (remove the quotes)'),
]


@pytest.mark.parametrize("mutate,path,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_structural_rule(mutate, path, words):
    errors = structural_errors(mutate)
    assert [e.path for e in errors] == [path], errors
    assert words in errors[0].message


VALID = [
    ("json names", lambda d: d["clusters"].append({"name": "c", "lbPolicy": "RANDOM", "connectTimeout": "1s"})),
    ("null means unset", lambda d: cluster(d).update(lb_policy=None, health_check=None)),
    ("enum by number", lambda d: cluster(d).update(lb_policy=4)),
    ("integer as string", lambda d: endpoint(d).update(weight="7")),
    ("integral float", lambda d: endpoint(d).update(weight=7.0)),
    ("fractional duration", lambda d: cluster(d).update(peak_ewma={"default_rtt": "0.030s"})),
    ("double wrapper as integer", lambda d: cluster(d).update(least_request={"active_request_bias": 2})),
    ("map of strings", lambda d: endpoint(d).update(metadata={"version": "2", "track": "stable"})),
]


@pytest.mark.parametrize("mutate", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_forms_parse(mutate):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    loader.parse_document(doc)


def test_json_names_and_proto_names_give_the_same_message():
    doc = {"clusters": [{"name": "c", "lbPolicy": "RING_HASH", "ringHash": {"minimumRingSize": 2048}}]}
    assert loader.parse_document(doc) == pb.MeshConfig(clusters=[
        pb.Cluster(name="c", lb_policy=pb.Cluster.RING_HASH, ring_hash=pb.RingHash(minimum_ring_size=2048))])


def test_every_structural_error_is_reported_at_once():
    def break_many(d):
        cluster(d).update(lb_polcy="RANDOM", connect_timeout="soon")
        d["endpoints"][0]["endpoints"][1].update(weight="three")
        route(d, 1)["route"].update(timeout=2)
        d.update(extra=True)

    assert [str(e) for e in structural_errors(break_many)] == [
        'clusters[0].lb_polcy: unknown field; did you mean "lb_policy"?',
        'clusters[0].connect_timeout: expected a duration like "2s" or "0.030s", got "soon"',
        'endpoints[0].endpoints[1].weight: expected an integer, got "three"',
        f'{R1}.route.timeout: expected a duration like "2s" or "0.030s", got 2 (durations are strings with a unit '
        'of seconds)',
        "extra: unknown field; MeshConfig has clusters, endpoints, routes, listeners, authorization_policies",
    ]


def test_parse_message_takes_any_resource():
    got = loader.parse_message({"cluster": "a", "endpoints": [{"address": "h:1"}]}, pb.EndpointSet)
    assert got == pb.EndpointSet(cluster="a", endpoints=[pb.Endpoint(address="h:1")])
    with pytest.raises(ConfigError) as raised:
        loader.parse_message({"clustr": "a"}, pb.EndpointSet)
    assert str(raised.value.errors[0]) == 'clustr: unknown field; did you mean "cluster"?'


# ---------------------------------------------------------------- files


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_error(path: str) -> str:
    with pytest.raises(ConfigError) as raised:
        loader.load_file(path)
    assert raised.value.source == path
    assert len(raised.value.errors) == 1
    return str(raised.value.errors[0])


def test_example_file_loads():
    mesh = loader.load_file(EXAMPLE)
    assert len(mesh.clusters) == 2 and len(mesh.endpoints) == 2 and len(mesh.routes) == 1
    assert mesh.endpoints[0].endpoints[0].weight.value == 3
    assert not mesh.endpoints[1].endpoints[0].HasField("weight")


def test_json_file_loads(tmp_path):
    path = write(tmp_path, "mesh.json", json.dumps(BASE, indent="\t"))
    assert loader.load_file(path) == loader.parse_document(BASE)


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "bad.yaml", "clusters:\n  - name: a\n    lb_policy: [RANDOM\n")
    message = load_error(path)
    assert message.startswith("YAML error at line 4, column 1:"), message


def test_json_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "bad.json", '{\n  "clusters": [\n    {"name": "a",}\n  ]\n}\n')
    assert load_error(path) == "JSON error at line 3, column 18: Expecting property name enclosed in double quotes"


def test_structural_errors_in_a_file_name_the_file(tmp_path):
    path = write(tmp_path, "typo.yaml", "clusters:\n  - name: a\n    lb_polcy: RANDOM\n")
    assert load_error(path) == 'clusters[0].lb_polcy: unknown field; did you mean "lb_policy"?'


@pytest.mark.parametrize("text", ["", "\n", "# nothing configured yet\n", "---\n"])
def test_empty_file_is_an_empty_mesh(tmp_path, text):
    assert loader.load_file(write(tmp_path, "empty.yaml", text)) == pb.MeshConfig()


@pytest.mark.parametrize("text,got", [("- name: a\n", "a list"), ("greeter\n", '"greeter"'), ("42\n", "42")])
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    assert load_error(write(tmp_path, "list.yaml", text)) == f"top level must be a mapping (a MeshConfig), got {got}"


def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, "dup.yaml", "clusters:\n  - name: a\n    name: b\n")
    assert load_error(path) == "YAML error at line 3, column 5: duplicate key 'name' (first at line 2)"
    path = write(tmp_path, "dup.json", '{"clusters": [], "clusters": []}')
    assert load_error(path) == "JSON error: duplicate key 'clusters'"


def test_dates_stay_strings(tmp_path):
    path = write(tmp_path, "zone.yaml", "endpoints:\n  - cluster: a\n    endpoints: [{address: 'h:1', zone: 2024-01-01}]\n")
    assert loader.load_file(path).endpoints[0].endpoints[0].zone == "2024-01-01"


def test_missing_file_is_a_config_error(tmp_path):
    path = str(tmp_path / "absent.yaml")
    assert load_error(path) == "cannot read file: No such file or directory"


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"clusters:\n  - name: caf\xe9\n")
    assert load_error(str(path)).startswith("not UTF-8 text")


# ---------------------------------------------------------------- dump


def full_mesh() -> pb.MeshConfig:
    doc = copy.deepcopy(BASE)
    cluster(doc).update(connect_timeout="0.250s", panic_threshold_percent=0,
                        health_check={"interval": "5s", "jitter_fraction": 0.25},
                        outlier_detection={"failure_status_codes": [14, 13]})
    endpoint(doc).update(metadata={"zeta": "1", "alpha": "2"}, health_status="DRAINING")
    route(doc, 0)["route"].update(retry_policy={"retry_on": ["UNAVAILABLE"], "num_retries": 2},
                                  request_headers_to_add=[{"name": "x-a", "value": "true"}])
    return loader.parse_document(doc)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_round_trips(fmt):
    mesh = full_mesh()
    text = loader.dump(mesh, fmt)
    assert loader.parse_text(text, fmt=fmt) == mesh
    assert validate.validate_mesh(loader.parse_text(text, fmt=fmt)) == []


def test_dump_is_stable_readable_and_omits_defaults():
    text = loader.dump(full_mesh())
    assert text == loader.dump(full_mesh())
    assert text.startswith("clusters:\n- name: greeter\n  lb_policy: PEAK_EWMA\n  health_check:\n")
    assert "metadata:\n      alpha: '2'\n      zeta: '1'\n" in text  # map keys sorted
    assert "panic_threshold_percent: 0\n" in text  # a set wrapper is kept even at zero
    assert "exact: 'true'" in text and "value: 'true'" in text  # strings that look like bools stay quoted
    assert "health_status: HEALTHY" not in text and "weight: 1\n" in text
    assert "address: 127.0.0.1:50053\n" in text and "zone: ''" not in text  # defaults omitted


def test_dump_of_an_empty_mesh_loads_back():
    assert loader.parse_text(loader.dump(pb.MeshConfig())) == pb.MeshConfig()
    with pytest.raises(ValueError):
        loader.dump(pb.MeshConfig(), "toml")


# ---------------------------------------------------------------- fuzzing

FIELD_NAMES = sorted({f.name for m in (pb.MeshConfig, pb.Cluster, pb.EndpointSet, pb.Endpoint, pb.RouteConfig,
                                       pb.VirtualHost, pb.Route, pb.RouteMatch, pb.HeaderMatcher, pb.RouteAction,
                                       pb.ClusterWeight, pb.RetryPolicy, pb.HealthCheck, pb.OutlierDetection,
                                       pb.PeakEwma, pb.LeastRequest, pb.RingHash, pb.CircuitBreaker,
                                       pb.HashPolicy, pb.HeaderValue)
                      for f in m.DESCRIPTOR.fields} | {"lbPolicy", "bogus"})
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["2s", "0.030s", "-1s", "1e3", "NaN", "Infinity", "PEAK_EWMA", "3", "/a", "*", "h:1", "true",
                     "\ud800", "99999999999999999999", "1.5"]),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=5), st.integers(-3, 3))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(KEYS, inner, max_size=5)), max_leaves=40)


def _paths(obj, prefix=()):
    """Every place in a document where a value sits, as a key path."""
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


BASE_PATHS = list(_paths(BASE))[1:]


def _replaced(path, value):
    doc = copy.deepcopy(BASE)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


# Arbitrary documents mostly fail at the top; splicing arbitrary values into the
# valid example reaches every nested field with its surroundings intact.
DOCUMENTS = st.one_of(
    JSONISH,
    st.dictionaries(st.sampled_from(["clusters", "endpoints", "routes"]), st.lists(JSONISH, max_size=3), max_size=3),
    st.builds(_replaced, st.sampled_from(BASE_PATHS), JSONISH),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_parse_document_raises_only_config_error(obj):
    try:
        mesh = loader.parse_document(obj)
    except ConfigError as e:
        assert e.errors and all(isinstance(err.message, str) and err.message for err in e.errors)
        if isinstance(obj, dict):
            # The walk, not ParseDict's first-error fallback, found them: each has its field path.
            assert all(err.path for err in e.errors), e.errors
        return
    # Whatever parses can be validated and dumped without raising, and dumps back to itself.
    validate.validate_mesh(mesh)
    assert loader.parse_text(loader.dump(mesh)) == mesh


@pytest.mark.parametrize("obj", [[1], "x", 3, True, {"clusters": {"name": "a"}}])
def test_non_mapping_documents_are_config_errors(obj):
    with pytest.raises(ConfigError):
        loader.parse_document(obj)


def test_paths_use_proto_names_whatever_the_spelling():
    with pytest.raises(ConfigError) as raised:
        loader.parse_document({"clusters": [{"name": "a", "healthCheck": {"jitterFraction": "x"}}]})
    assert raised.value.errors[0].path == "clusters[0].health_check.jitter_fraction"
