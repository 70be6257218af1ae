"""OFREP single evaluation through the assignments handler against PostgreSQL: the decision pipeline's
answers as OpenFeature sees them, errors in the protocol's shape, exposures recorded."""

from __future__ import annotations

from typing import Any

import pytest

from abtest.domain.assignment import EnrollRequest, Reason
from abtest.domain.serving import AssignmentService
from abtest.errors import Unavailable
from abtest.storage import CatalogRepository
from abtest.storage.assignments import AssignmentRepository
from abtest.storage.database import get_database
from localdev.lambda_events import LocalLambdaContext, http_api_event
from localdev.template import http_routes
from tests.integration.conftest import ApiResponse, authorizer, call
from tests.integration.test_assignments_api import predicted_tag, running_experiment
from tests.integration.test_experiments_api import BASE
from tests.integration.test_holdouts import running_holdout, users_by_group

FLAGS = "/ofrep/v1/evaluate/flags"
EVALUATE = ("abtest/evaluate",)


def evaluate(
    surface: str, context: Any = None, *, raw: str | None = None, scopes: tuple[str, ...] = EVALUATE
) -> ApiResponse:
    body = None if raw is not None else {"context": context}
    return call("POST", f"{FLAGS}/{surface}", body, raw_body=raw, scopes=scopes)


def post(path: str, raw: str, headers: dict[str, str] | None = None) -> ApiResponse:
    """POST a raw body to an OFREP route with any headers (If-None-Match), as API Gateway would."""
    single = path != FLAGS
    route = next(r for r in http_routes() if r.path == (f"{FLAGS}/{{key}}" if single else FLAGS))
    event = http_api_event(
        "POST",
        path,
        route_key=route.route_key,
        path_parameters={"key": path.rpartition("/")[2]} if single else None,
        headers={"content-type": "application/json", **(headers or {})},
        body=raw,
        authorizer=authorizer(EVALUATE),
    )
    return ApiResponse(route.load()(event, LocalLambdaContext(function_name=route.function)))


def test_a_running_experiments_user_gets_the_variant_config_and_tag(api: Any, sql: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    tag = predicted_tag(experiment, "user-1")
    assert tag is not None

    first = evaluate("recommendations", {"targetingKey": "user-1", "country": "CA"})
    again = evaluate("recommendations", {"targetingKey": "user-1"})

    assert first.status == 200, first
    assert first.headers["Cache-Control"] == "no-store"
    variant = next(v for v in experiment["variants"] if f"{experiment['name']}:{v['name']}" == tag)
    assert first.json == {
        "key": "recommendations",
        "value": variant["config"],
        "variant": tag,
        "reason": "SPLIT",
        "metadata": {
            "experimentId": experiment["id"],
            "experimentName": experiment["name"],
            "configVersion": 1,
        },
    }
    assert again.json == first.json
    assert sql("SELECT count(*) FROM assignments") == [(1,)]
    assert sql("SELECT count(*) FROM exposures") == [(2,)], "every single evaluation is an exposure"


def test_an_override_is_a_targeting_match(api: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    forced = api("PUT", f"{BASE}/{experiment['id']}/overrides/qa-user", {"variant": "treatment"})
    assert forced.status in (200, 201), forced

    answer = evaluate("recommendations", {"targetingKey": "qa-user"}).json

    assert (answer["reason"], answer["variant"]) == ("TARGETING_MATCH", f"{experiment['name']}:treatment")
    assert answer["value"] == {"lora_boost": 0.5}


def test_a_held_out_user_is_disabled_with_the_code_default(api: Any) -> None:
    running_experiment(api, traffic_allocation=1.0)
    holdout = running_holdout(api, percent=0.1)
    user = users_by_group(holdout)["holdout"][0]

    answer = evaluate("recommendations", {"targetingKey": user}).json

    assert answer["reason"] == "DISABLED"
    assert "value" not in answer
    assert "variant" not in answer


@pytest.mark.parametrize(
    ("setup", "service_reason"),
    [
        ({"traffic_allocation": 0.5}, "excluded_by_traffic"),
        ({"targeting": {"country": {"$in": ["FR", "BE"]}}}, "targeting_not_met"),
    ],
)
def test_a_user_in_no_experiment_gets_the_code_default(
    api: Any, setup: dict[str, Any], service_reason: str
) -> None:
    experiment = running_experiment(api, **{"traffic_allocation": 1.0, **setup})
    users = [f"user-{n}" for n in range(40)]
    if service_reason == "excluded_by_traffic":
        users = [u for u in users if predicted_tag(experiment, u) is None]

    answer = evaluate("recommendations", {"targetingKey": users[0], "country": "CA"})

    assert answer.status == 200, answer
    assert answer.json["reason"] == "STATIC"
    assert "value" not in answer.json
    assert "variant" not in answer.json
    assert answer.json["metadata"]["abtestReason"] == service_reason


def test_a_surface_with_nothing_running_is_the_code_default_an_unknown_one_not_found(api: Any) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    api("PUT", f"{BASE}/{experiment['id']}/status", {"status": "completed"})

    known = evaluate("recommendations", {"targetingKey": "u"})
    unknown = evaluate("checkout", {"targetingKey": "u"})
    invalid = evaluate("NOT%20A%20SURFACE", {"targetingKey": "u"})

    assert (known.status, known.json["reason"]) == (200, "STATIC")
    assert unknown.status == 404
    assert unknown.json["errorCode"] == "FLAG_NOT_FOUND"
    assert unknown.json["key"] == "checkout"
    assert unknown.json["errorDetails"]
    assert (invalid.status, invalid.json["errorCode"]) == (404, "FLAG_NOT_FOUND")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "PARSE_ERROR"),
        ("{not json", "PARSE_ERROR"),
        ('{"context": {"targetingKey": NaN}}', "PARSE_ERROR"),
        ("[]", "INVALID_CONTEXT"),
        ('{"context": "u"}', "INVALID_CONTEXT"),
        ('{"context": {"targetingKey": "u"}, "extra": 1}', "INVALID_CONTEXT"),
        ('{"context": {"targetingKey": 7}}', "INVALID_CONTEXT"),
        ('{"context": {"targetingKey": "u", "big": "' + "x" * 5000 + '"}}', "INVALID_CONTEXT"),
        ('{"context": {}}', "TARGETING_KEY_MISSING"),
        ('{"context": {"targetingKey": ""}}', "TARGETING_KEY_MISSING"),
    ],
)
def test_bad_requests_are_400_in_ofreps_shape(api: Any, sql: Any, raw: str, code: str) -> None:
    running_experiment(api, traffic_allocation=1.0)

    response = evaluate("recommendations", raw=raw)

    assert response.status == 400, response
    assert set(response.json) == {"key", "errorCode", "errorDetails"}
    assert (response.json["key"], response.json["errorCode"]) == ("recommendations", code)
    assert sql("SELECT count(*) FROM exposures") == [(0,)]


def test_not_json_and_missing_scope_stay_in_ofreps_shape(api: Any) -> None:
    not_json = post(f"{FLAGS}/recommendations", "targetingKey=u", {"content-type": "text/plain"})
    refused = evaluate("recommendations", {"targetingKey": "u"}, scopes=("abtest/read", "abtest/admin"))
    ingest = evaluate("recommendations", {"targetingKey": "u"}, scopes=("abtest/ingest",))

    assert (not_json.status, not_json.json["errorCode"]) == (400, "PARSE_ERROR")
    assert (refused.status, refused.json["errorCode"]) == (403, "GENERAL")
    assert "evaluate" in refused.json["errorDetails"]
    assert ingest.status == 404  # `ingest` is accepted: the surface is simply unknown


def test_database_unavailable_is_429_with_retry_after(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from abtest import wiring

    running_experiment(api, traffic_allocation=1.0)

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise Unavailable("the database did not answer in time")

    monkeypatch.setattr(wiring.assignment_service(), "evaluate", unavailable)
    response = evaluate("recommendations", {"targetingKey": "u"})

    assert response.status == 429
    assert response.headers["Retry-After"] == "1"


# --- bulk evaluation ---------------------------------------------------------------------------------


def test_bulk_evaluates_every_running_surface_as_a_prefetch(api: Any, sql: Any) -> None:
    recs = running_experiment(api, traffic_allocation=1.0)
    running_experiment(api, name="checkout_test", surface="checkout", traffic_allocation=1.0)
    paused = running_experiment(api, name="search_test", surface="search", traffic_allocation=1.0)
    api("PUT", f"{BASE}/{paused['id']}/status", {"status": "paused"})
    body = '{"context": {"targetingKey": "user-3"}}'

    first = post(FLAGS, body)

    assert first.status == 200, first
    assert [flag["key"] for flag in first.json["flags"]] == ["checkout", "recommendations"]
    assert {flag["reason"] for flag in first.json["flags"]} == {"SPLIT"}
    assert first.json["metadata"] == {"prefetch": True, "exposuresRecorded": False}
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert sql("SELECT count(*) FROM assignments WHERE user_id = 'user-3'") == [(2,)]
    assert sql("SELECT count(*) FROM exposures") == [(0,)], "a prefetch records no exposure"
    # The single route then serves the stored (prefetched) variant, and exposes it.
    recs_flag = next(flag for flag in first.json["flags"] if flag["key"] == "recommendations")
    single = evaluate("recommendations", {"targetingKey": "user-3"})
    assert single.json["variant"] == recs_flag["variant"] == predicted_tag(recs, "user-3")
    assert sql("SELECT count(*) FROM exposures") == [(1,)]


def test_bulk_answers_304_for_an_unchanged_etag(api: Any) -> None:
    running_experiment(api, traffic_allocation=1.0)
    body = '{"context": {"targetingKey": "user-3"}}'
    tag = post(FLAGS, body).headers["ETag"]

    same = post(FLAGS, body, {"if-none-match": tag})
    weak = post(FLAGS, body, {"if-none-match": f'"other", W/{tag}'})
    other_user = post(FLAGS, '{"context": {"targetingKey": "user-4"}}', {"if-none-match": tag})

    assert (same.status, same.text, same.headers["ETag"]) == (304, "", tag)
    assert weak.status == 304
    assert other_user.status == 200 or other_user.headers["ETag"] == tag  # same variant, same answer


def test_bulk_with_nothing_running_is_an_empty_list_and_errors_have_no_key(api: Any) -> None:
    empty = post(FLAGS, '{"context": {"targetingKey": "u"}}')
    missing = post(FLAGS, '{"context": {}}')

    assert (empty.status, empty.json["flags"]) == (200, [])
    assert (missing.status, missing.json) == (
        400,
        {"errorCode": "TARGETING_KEY_MISSING", "errorDetails": missing.json["errorDetails"]},
    )


class CountingRepository(AssignmentRepository):
    """The real repository, counting enrollment statements (each one round trip)."""

    statements = 0

    def enroll(self, request: EnrollRequest) -> Any:
        self.statements += 1
        return super().enroll(request)

    def enroll_surfaces(self, user_id: str, requests: Any) -> Any:
        self.statements += 1
        return super().enroll_surfaces(user_id, requests)


def test_all_surfaces_are_decided_in_one_statement(api: Any, sql: Any) -> None:
    surfaces = ["alpha", "beta", "gamma", "delta", "epsilon"]
    for surface in surfaces:
        running_experiment(api, name=f"{surface}_test", surface=surface, traffic_allocation=1.0)
    holdout = running_holdout(api, percent=0.1, all=True)
    repository = CountingRepository(get_database())
    service = AssignmentService(
        repository, CatalogRepository(get_database()), experiment_ttl=60, catalog_ttl=60
    )
    service.evaluate_all("warm-up")
    # 400 candidates: about 40 in each group of a 10% holdout (40 gave none at all in about 1.5% of runs,
    # since the holdout's salt is its random id).
    users = users_by_group(holdout, n=400)
    assert len(users["measurement"]) >= 5
    assert len(users["holdout"]) >= 2

    for user in users["measurement"][:5] + users["holdout"][:2]:
        repository.statements = 0
        answers = service.evaluate_all(user)
        assert repository.statements == 1, user
        assert sorted(answers) == sorted(surfaces)
        expected = Reason.HOLDOUT if user in users["holdout"] else Reason.ASSIGNED
        assert {a.reason for a in answers.values()} == {expected}
    # The same answers as the per-surface path, which then finds the stored assignments.
    user = users["measurement"][0]
    bulk = service.evaluate_all(user)
    for surface in surfaces:
        assert service.evaluate(surface, user).variant == bulk[surface].variant
    assert sql("SELECT count(*) FROM exposures") == [(len(surfaces),)]


def test_a_stale_surface_falls_back_to_its_own_round_trip(api: Any) -> None:
    running_experiment(api, traffic_allocation=1.0)
    running_experiment(api, name="checkout_test", surface="checkout", traffic_allocation=1.0)
    repository = CountingRepository(get_database())
    service = AssignmentService(
        repository, CatalogRepository(get_database()), experiment_ttl=60, catalog_ttl=60
    )
    service.evaluate_all("warm-up")
    running_holdout(api, percent=0.1, surfaces=["checkout"])  # the cache does not know it

    repository.statements = 0
    answers = service.evaluate_all("user-5")

    assert sorted(answers) == ["checkout", "recommendations"]
    # One statement for both, then checkout alone again: its holdouts were stale (two runs: the
    # stale one, and the one after the reload).
    assert repository.statements == 3
