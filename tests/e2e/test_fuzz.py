"""Schemathesis against the local server, driven by the generated OpenAPI spec: no 5xx, ever, and
every 4xx is a JSON error in the service's shape. Bounded and derandomized so CI is repeatable."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localdev.openapi import build_spec
from tests.e2e.conftest import Http

schema = schemathesis.openapi.from_dict(build_spec())


def assert_error_shape(path: str, body: Any, method: str = "POST") -> None:
    """The service's error shape; on the OpenFeature routes, OFREP's (docs/openfeature.md). Another
    method on an OFREP path is no route at all (API Gateway's own 404 when deployed)."""
    assert isinstance(body, dict)
    if path.startswith("/ofrep/") and method.upper() == "POST":
        assert isinstance(body.get("errorCode"), str), body
        assert isinstance(body.get("errorDetails"), str), body
        assert "error" not in body, body
        return
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("message"), str), body


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_json_client_errors(case: Any, server: Http) -> None:
    response = case.call(base_url=server.base_url, timeout=30)

    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert_error_shape(case.path, body, case.method)
    elif response.status_code != 204:
        headers = {name.lower(): value for name, value in response.headers.items()}
        content_type = headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        # The report pages answer HTML (as their OpenAPI responses say); everything else JSON.
        expected = "text/html" if case.path.endswith(("/report", "/digest")) else "application/json"
        assert content_type.startswith(expected)
        if expected == "text/html":
            assert response.text.startswith("<!DOCTYPE html>")
        else:
            response.json()


# Hostile JSON values in every client JSON field: the class of input behind issue 10 (deep nesting,
# huge numbers, long lists, lone surrogates, odd keys). Whatever the value, the answer is a JSON 4xx or
# a success, never a 5xx, and afterwards every read still answers strict JSON and the rollup runs.


class Raw(str):
    """JSON text inserted as it is (for what json.dumps cannot or will not write)."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


odd_text = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.sampled_from(["", "\x00", "a\x00b", "__proto__", "constructor", "a.b[0]", "x" * 5000, "é", "🎉"]),
)
huge_numbers = st.one_of(
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**53) + 2),
    st.sampled_from([1e308, -1e308, 5e-324, 1e9, -1e9, 1e9 + 1]),
    st.sampled_from(
        [Raw("1" * 5000), Raw("1e400"), Raw("-1e400"), Raw("NaN"), Raw("Infinity"), Raw("1" * 400)]
    ),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
    huge_numbers,
)
deep = st.integers(min_value=20, max_value=1500).flatmap(
    lambda n: st.sampled_from([Raw("[" * n + "]" * n), Raw('{"a":' * n + "1" + "}" * n)])
)
long_lists = st.integers(min_value=100, max_value=40_000).map(lambda n: Raw("[" + ",".join(["0"] * n) + "]"))
json_values = st.one_of(
    st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
        max_leaves=12,
    ),
    deep,
    long_lists,
)
json_objects = st.one_of(st.dictionaries(odd_text, json_values, max_size=4), deep, json_values)

# (route, builder of the body around the hostile value) for every client JSON field, and a few others.
TARGETS: list[tuple[str, str, Any]] = [
    (
        "POST",
        "/api/v1/experiments",
        lambda e, v: {
            "name": "f",
            "surface": "search",
            "variants": [{"name": "a", "weight": 0.5, "config": v}, {"name": "b", "weight": 0.5}],
        },
    ),
    (
        "POST",
        "/api/v1/experiments",
        lambda e, v: {
            "name": "g",
            "variants": [
                {"name": "a", "weight": 0.5, "config": {"lora_boost": v}},
                {"name": "b", "weight": 0.5},
            ],
        },
    ),
    ("POST", "/api/v1/experiments", lambda e, v: {"name": v, "salt": v, "variants": []}),
    ("POST", "/api/v1/assignments", lambda e, v: {"experiment_id": e, "user_id": "f", "context": v}),
    ("POST", "/api/v1/assignments", lambda e, v: {"experiment_id": e, "user_id": v, "record_exposure": v}),
    ("POST", "/api/v1/recommendations", lambda e, v: {"user_id": "f", "context": v, "limit": 2}),
    ("POST", "/api/v1/recommendations", lambda e, v: {"user_id": "f", "limit": v, "surface": v}),
    (
        "POST",
        "/api/v1/experiments/conversions",
        lambda e, v: {"experiment_id": e, "user_id": "f", "metric_name": "m", "metadata": v},
    ),
    (
        "POST",
        "/api/v1/experiments/conversions",
        lambda e, v: {"experiment_id": e, "user_id": "f", "metric_name": "m", "value": v, "timestamp": v},
    ),
    (
        "POST",
        "/api/v1/events",
        lambda e, v: {
            "events": [
                {
                    "type": "conversion",
                    "experiment_id": e,
                    "user_id": "f",
                    "event_id": "x",
                    "metric_name": "m",
                    "metadata": v,
                    "value": v,
                }
            ]
        },
    ),
    (
        "POST",
        "/api/v1/events",
        lambda e, v: {
            "events": [{"type": "exposure", "experiment_id": e, "user_id": "f", "event_id": v, "context": v}]
        },
    ),
    (
        "POST",
        "/ofrep/v1/evaluate/flags/recommendations",
        lambda e, v: {"context": {"targetingKey": "f", "a": v}},
    ),
    ("POST", "/ofrep/v1/evaluate/flags", lambda e, v: {"context": v}),
]


@given(target=st.sampled_from(TARGETS), value=json_objects)
@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_hostile_json_values_in_every_field(http: Http, target: tuple[str, str, Any], value: Any) -> None:
    method, path, build = target
    experiment = _fuzz_experiment(http)
    body = to_json(build(experiment, value)).encode()
    status, _, text = _send_raw(http, method, path, body)
    assert status < 500, (path, body[:300], text[:300])
    answer = json.loads(text, parse_constant=_reject_constant)
    if status >= 400:
        assert_error_shape(path, answer)


_FUZZ: dict[str, str] = {}


def _fuzz_experiment(http: Http) -> str:
    """One running experiment per test run (the http fixture truncated the database before)."""
    key = http.base_url
    if key not in _FUZZ:
        status, _, created = http.request(
            "POST",
            "/api/v1/experiments",
            {"name": "fuzzed", "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]},
        )
        assert status == 201, created
        http.request("PUT", f"/api/v1/experiments/{created['id']}/status", {"status": "running"})
        http.request("POST", "/api/v1/assignments", {"experiment_id": created["id"], "user_id": "f"})
        _FUZZ[key] = created["id"]
    return _FUZZ[key]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} in a response")


def _send_raw(http: Http, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(http.base_url + path, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_reads_survive_the_hostile_values(http: Http) -> None:
    """After the fuzzing above (same server, same data), every read and a rollup still work."""
    from tests.e2e.test_hardening import assert_every_read_is_healthy

    _FUZZ.clear()
    experiment = _fuzz_experiment(http)
    for value in (Raw("[" * 1200 + "]" * 1200), Raw("1" * 5000), {"\ud800": 1}, 1e308):
        for method, path, build in TARGETS:
            status, _, _ = _send_raw(http, method, path, to_json(build(experiment, value)).encode())
            assert status < 500
    assert_every_read_is_healthy(http)
