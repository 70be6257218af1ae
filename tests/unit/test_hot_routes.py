"""Hot routes (abtest.http.app.hot_route): the fast body parse answers exactly as the validating resolver.

Two resolvers serve the same routes, one with `@hot_route` and one without; every body, valid or not,
must get the same answer from both (status, headers, body), and valid ones must take the fast path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from abtest.domain.events import Conversion, ConversionIn, EventBatch
from abtest.errors import NotFound, Unavailable
from abtest.http.app import create_app, hot_route, refuse
from abtest.http.schemas import AssignmentRequest, RecommendationRequest
from localdev.lambda_events import http_api_event

EXPERIMENT = "6f1c0f7e-1b5e-4a57-9a3c-1f0e0c0e0c0e"
SCOPES = {f"POST /{kind}/{name}": "ingest" for kind in ("hot", "slow") for name in ("a", "r", "c", "e", "x")}
MODELS: dict[str, type[BaseModel]] = {
    "a": AssignmentRequest,
    "r": RecommendationRequest,
    "c": ConversionIn,
    "e": EventBatch,
}


def make_app(kind: str) -> Any:
    app = create_app()
    mark: Callable[[Any], Any] = hot_route if kind == "hot" else (lambda f: f)

    # Echo routes: what the route received is what it answers, so parsing differences show.
    @app.post(f"/{kind}/a")
    @mark
    def assign(body: AssignmentRequest) -> AssignmentRequest:
        return body

    @app.post(f"/{kind}/r")
    @mark
    def recommend(body: RecommendationRequest) -> RecommendationRequest:
        return body

    @app.post(f"/{kind}/c")
    @mark
    def convert(body: ConversionIn) -> Response[ConversionIn]:
        return Response(201, content_types.APPLICATION_JSON, body, headers={"Idempotent-Replayed": "false"})

    @app.post(f"/{kind}/e")
    @mark
    def events(body: EventBatch) -> EventBatch:
        return body

    @app.post(f"/{kind}/x")
    @mark
    def failing(body: AssignmentRequest) -> Conversion:
        if body.user_id == "missing":
            raise NotFound("no experiment with this id", code="experiment_not_found", field="experiment_id")
        raise Unavailable("the database is unavailable; try again shortly")

    return app


HOT, SLOW = make_app("hot"), make_app("slow")


def answer(
    kind: str, name: str, body: str | bytes | None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    app = HOT if kind == "hot" else SLOW
    event = http_api_event(
        "POST",
        f"/{kind}/{name}",
        route_key=f"POST /{kind}/{name}",
        headers={"content-type": "application/json"} if headers is None else headers,
        body=body,
        authorizer={"jwt": {"claims": {}, "scopes": ["ingest"]}},
    )
    return refuse(event, SCOPES) or app.resolve(event, None)  # type: ignore[arg-type]


def assert_same(name: str, body: str | bytes | None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    hot, slow = answer("hot", name, body, headers), answer("slow", name, body, headers)
    assert hot == slow, body
    return hot


VALID = [
    ("a", {"user_id": "u-1", "experiment_id": EXPERIMENT}),
    (
        "a",
        {"user_id": "ユーザー", "experiment_id": EXPERIMENT, "context": {"a": [1, 2.5, None, {"b": "é🎉"}]}},
    ),
    ("a", {"user_id": "u", "experiment_id": EXPERIMENT, "record_exposure": False, "context": {"n": 2**53}}),
    ("r", {"user_id": "u-1"}),
    ("r", {"user_id": "u-1", "limit": 100, "surface": "home.page", "context": {"x": 1e-7}}),
    ("c", {"experiment_id": EXPERIMENT, "user_id": "u", "metric_name": "purchase", "value": 5}),
    (
        "c",
        {
            "experiment_id": EXPERIMENT,
            "user_id": "u",
            "metric_name": "purchase",
            "value": 12.99,
            "event_id": "e-1",
            "metadata": {"sku": "x"},
            "timestamp": "2026-01-02T03:04:05+02:00",
        },
    ),
    (
        "e",
        {
            "events": [
                {"type": "exposure", "experiment_id": EXPERIMENT, "user_id": "u", "event_id": "1"},
                {
                    "type": "conversion",
                    "experiment_id": EXPERIMENT,
                    "user_id": "u",
                    "event_id": "2",
                    "metric_name": "click",
                    "timestamp": "2026-01-02T03:04:05",
                },
            ]
        },
    ),
]


@pytest.mark.parametrize(("name", "body"), VALID)
def test_valid_bodies_take_the_fast_path_and_answer_as_before(
    name: str, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = answer("slow", name, json.dumps(body))
    assert expected["statusCode"] in (200, 201)

    def no_resolver(*_args: Any) -> Any:
        raise AssertionError("a valid body of a hot route must not reach the validating resolver")

    monkeypatch.setattr(APIGatewayHttpResolver, "resolve", no_resolver)
    for text in (json.dumps(body), json.dumps(body, ensure_ascii=False, indent=2)):
        assert answer("hot", name, text) == expected


DUPLICATE_KEYS = '{"user_id": "a", "user_id": "b", "experiment_id": "' + EXPERIMENT + '"}'
TRICKY = [
    "",
    "{}",
    "[]",
    "null",
    "not json",
    "\ufeff" + json.dumps({"user_id": "u", "experiment_id": EXPERIMENT}),
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '"} trailing',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '",}',
    '{"user_id": "u\\ud800", "experiment_id": "' + EXPERIMENT + '"}',
    '{"user_id": "u\\u0000", "experiment_id": "' + EXPERIMENT + '"}',
    '{"user_id": "u\nv", "experiment_id": "' + EXPERIMENT + '"}',
    DUPLICATE_KEYS,
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"x": NaN}}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"x": Infinity}}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"x": 1e400}}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"x": 9007199254740993}}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"x": ' + "9" * 5000 + "}}",
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": {"\\ud800": 1}}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": ' + '{"a":' * 40 + "1" + "}" * 41,
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "context": ' + '{"a":' * 3000 + "1" + "}" * 3001,
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "record_exposure": "true"}',
    '{"user_id": 5, "experiment_id": "' + EXPERIMENT + '"}',
    '{"user_id": "u", "experiment_id": "not-a-uuid"}',
    '{"user_id": "u", "experiment_id": "' + EXPERIMENT + '", "extra": 1}',
    '{"user_id": "' + "x" * (2**20) + '", "experiment_id": "' + EXPERIMENT + '"}',
]


@pytest.mark.parametrize("body", TRICKY)
@pytest.mark.parametrize("name", ["a", "r", "c", "e"])
def test_every_refused_body_gets_the_same_error_as_before(name: str, body: str) -> None:
    found = assert_same(name, body)
    if name == "a":
        assert found["statusCode"] in (400, 413, 422), found


@pytest.mark.parametrize("name", ["a", "r", "c", "e"])
def test_a_repeated_key_is_refused_naming_it_on_both_paths(name: str) -> None:
    # It used to be accepted, the last value silently winning (pydantic's parser and json alike).
    found = assert_same(name, DUPLICATE_KEYS)
    assert found["statusCode"] == 422, found
    answer = json.loads(found["body"])
    assert (answer["error"], answer["field"]) == ("duplicate_key", "user_id")


def test_a_negative_zero_reaches_the_route_as_zero_on_both_paths() -> None:
    event = {
        "type": "conversion",
        "experiment_id": EXPERIMENT,
        "user_id": "u",
        "event_id": "e",
        "value": -0.0,
    }
    body = {"events": [{**event, "metric_name": "purchase"}]}
    found = assert_same("e", json.dumps(body))
    assert found["statusCode"] == 200, found
    assert '"value":0.0' in found["body"]
    assert "-0" not in found["body"]


def test_base64_bodies_missing_content_type_and_forms_answer_as_before() -> None:
    valid = json.dumps(VALID[0][1])
    assert assert_same("a", valid.encode("utf-16"))["statusCode"] == 400  # not UTF-8: base64-encoded
    assert assert_same("a", valid, headers={})["statusCode"] == 200
    assert assert_same("a", valid, headers={"content-type": "text/plain"})["statusCode"] == 415


def test_route_errors_are_mapped_as_before() -> None:
    missing = assert_same("x", json.dumps({"user_id": "missing", "experiment_id": EXPERIMENT}))
    assert missing["statusCode"] == 404
    down = assert_same("x", json.dumps({"user_id": "down", "experiment_id": EXPERIMENT}))
    assert (down["statusCode"], down["headers"]["Retry-After"]) == (503, "1")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = sorted({name for model in MODELS.values() for name in model.model_fields} | {"type"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(MODELS)),
    body=st.dictionaries(
        st.sampled_from(FIELDS),
        json_values | st.just(EXPERIMENT) | st.just("2026-01-02T03:04:05Z") | st.just("purchase"),
        max_size=6,
    ),
    ensure_ascii=st.booleans(),
)
def test_any_body_gets_the_same_answer_both_ways(name: str, body: dict[str, Any], ensure_ascii: bool) -> None:
    # Lone surrogates only survive json.dumps with ensure_ascii; the other form is UTF-8 text.
    try:
        text = json.dumps(body, ensure_ascii=ensure_ascii)
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(body)
    assert_same(name, text)
