"""Overrides in-process against PostgreSQL: the routes, the enrollment statement with an override
present and absent, forced events kept out of the analysis, and races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import ApiResponse
from tests.integration.test_assignments_api import catalog, predicted_tag
from tests.integration.test_events_and_metrics import rollup
from tests.integration.test_experiments_api import BASE, experiment_body

__all__ = ["catalog"]  # the fixture, used by name


def start(api: Any, name: str = "ov_exp", **fields: Any) -> dict[str, Any]:
    created = api("POST", BASE, experiment_body(name, traffic_allocation=1.0, **fields)).json
    started: dict[str, Any] = api("PUT", f"{BASE}/{created['id']}/status", {"status": "running"}).json
    return started


def force(api: Any, experiment_id: str, user: str, variant: str) -> ApiResponse:
    response: ApiResponse = api(
        "PUT", f"{BASE}/{experiment_id}/overrides/{quote(user, safe='')}", {"variant": variant}
    )
    return response


def assign(api: Any, experiment_id: str, user: str) -> dict[str, Any]:
    body: dict[str, Any] = api(
        "POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user}
    ).json
    return body


def recommend(api: Any, user: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = api("POST", "/api/v1/recommendations", {"user_id": user, "limit": 2, **extra}).json
    return body


def stored_counts(sql: Any) -> dict[str, int]:
    tables = ("assignments", "namespace_members", "exposures", "conversions", "override_exposures")
    return {table: sql(f"SELECT count(*) FROM {table}")[0][0] for table in (*tables, "override_conversions")}


def test_an_override_is_served_on_the_very_next_request_and_never_stored(
    api: Any, sql: Any, catalog: None
) -> None:
    experiment = start(api)
    control, treatment = experiment["variants"]
    # Warm the container's cache first: the override must not depend on it.
    assert assign(api, experiment["id"], "warm-up")["reason"] == "assigned"

    written = force(api, experiment["id"], "qa-1", "treatment")
    assert written.status == 200, written
    assert written.json["variant"] == "treatment"
    assert written.json["variant_id"] == treatment["id"]
    assert (written.json["user_id"], written.json["warning"]) == ("qa-1", None)

    answer = assign(api, experiment["id"], "qa-1")
    assert (answer["reason"], answer["source"], answer["enrolled"]) == ("override", "override", True)
    assert answer["variant"]["name"] == "treatment"
    assert answer["experiment_variant"] == "ov_exp:treatment"
    assert (answer["new_assignment"], answer["exposure_recorded"]) == (False, True)
    recs = recommend(api, "qa-1")
    assert (recs["reason"], recs["source"], recs["experiment_id"]) == (
        "override",
        "override",
        experiment["id"],
    )
    assert {item["experiment_variant"] for item in recs["recommendations"]} == {"ov_exp:treatment"}
    normal = recommend(api, "warm-up")
    assert (normal["reason"], normal["source"]) == ("assigned", "assignment")

    assert sql("SELECT user_id FROM assignments") == [("warm-up",)]
    assert sql("SELECT user_id FROM namespace_members") == [("warm-up",)]
    assert sql("SELECT user_id, variant_id::text FROM override_exposures") == [("qa-1", treatment["id"])] * 2
    assert sql("SELECT count(*) FROM exposures WHERE user_id = 'qa-1'") == [(0,)]

    # Changing the forced variant is a PUT again; it too applies at once.
    assert force(api, experiment["id"], "qa-1", "control").json["variant_id"] == control["id"]
    assert assign(api, experiment["id"], "qa-1")["variant"]["name"] == "control"

    assert api("DELETE", f"{BASE}/{experiment['id']}/overrides/qa-1").status == 204
    after = assign(api, experiment["id"], "qa-1")
    assert (after["reason"], after["source"]) == ("assigned", "assignment")
    assert after["experiment_variant"] == predicted_tag(experiment, "qa-1")
    assert sql("SELECT count(*) FROM assignments WHERE user_id = 'qa-1'") == [(1,)]


def test_the_list_and_its_order(api: Any) -> None:
    experiment = start(api)
    for user, variant in (("b", "control"), ("a", "treatment"), ("ユーザー @x", "control")):
        assert force(api, experiment["id"], user, variant).status == 200
    listing = api("GET", f"{BASE}/{experiment['id']}/overrides").json
    assert listing["count"] == 3
    assert listing["max_overrides"] == 1000
    assert [(o["user_id"], o["variant"]) for o in listing["overrides"]] == [
        ("b", "control"),
        ("a", "treatment"),
        ("ユーザー @x", "control"),
    ]
    assert api("GET", f"{BASE}/00000000-0000-4000-8000-000000000000/overrides").status == 404


@pytest.mark.parametrize(
    ("path_user", "body", "status", "error", "field"),
    [
        ("qa", {"variant": "nope"}, 422, "unknown_variant", "variant"),
        ("qa", {"variant": "bad name"}, 422, "validation_error", "variant"),
        ("qa", {"variant": "control", "extra": 1}, 422, "validation_error", "extra"),
        ("qa", {}, 422, "validation_error", "variant"),
        ("a%00b", {"variant": "control"}, 422, "validation_error", "user_id"),
        ("%FF%FE", {"variant": "control"}, 400, "invalid_path", "user_id"),
        ("x" * 257, {"variant": "control"}, 422, "validation_error", "user_id"),
    ],
)
def test_bad_writes_are_refused_with_nothing_stored(
    api: Any, sql: Any, path_user: str, body: dict[str, Any], status: int, error: str, field: str
) -> None:
    experiment = start(api)
    response = api("PUT", f"{BASE}/{experiment['id']}/overrides/{path_user}", body)
    assert (response.status, response.json["error"], response.json["field"]) == (status, error, field)
    assert sql("SELECT count(*) FROM experiment_overrides") == [(0,)]


def test_unknown_and_completed_experiments(api: Any, sql: Any) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response = api("PUT", f"{BASE}/{missing}/overrides/qa", {"variant": "control"})
    assert (response.status, response.json["error"]) == (404, "experiment_not_found")
    response = api("DELETE", f"{BASE}/{missing}/overrides/qa")
    assert (response.status, response.json["error"]) == (404, "experiment_not_found")

    experiment = start(api)
    response = api("DELETE", f"{BASE}/{experiment['id']}/overrides/qa")
    assert (response.status, response.json["error"]) == (404, "override_not_found")
    api("PUT", f"{BASE}/{experiment['id']}/status", {"status": "completed"})
    response = force(api, experiment["id"], "qa", "control")
    assert (response.status, response.json["error"]) == (409, "experiment_completed")
    assert sql("SELECT count(*) FROM experiment_overrides") == [(0,)]


def test_overrides_of_a_draft_wait_for_the_start_and_go_with_its_deletion(api: Any, sql: Any) -> None:
    draft = api("POST", BASE, experiment_body("ov_draft", traffic_allocation=1.0)).json
    assert force(api, draft["id"], "qa", "treatment").status == 200
    answer = assign(api, draft["id"], "qa")
    assert (answer["reason"], answer["source"], answer["variant"]) == ("experiment_not_running", None, None)
    api("PUT", f"{BASE}/{draft['id']}/status", {"status": "running"})
    assert assign(api, draft["id"], "qa")["source"] == "override"
    api("PUT", f"{BASE}/{draft['id']}/status", {"status": "paused"})
    paused = assign(api, draft["id"], "qa")
    assert (paused["reason"], paused["variant"]) == ("experiment_not_running", None)
    assert sql("SELECT count(*) FROM override_exposures") == [(1,)]

    other = api("POST", BASE, experiment_body("ov_draft2")).json
    force(api, other["id"], "qa", "control")
    assert api("DELETE", f"{BASE}/{other['id']}").status == 204
    assert sql("SELECT count(*) FROM experiment_overrides") == [(1,)]


def test_an_assigned_user_is_warned_kept_and_analysed_only_for_what_came_before(api: Any, sql: Any) -> None:
    experiment = start(api)
    real = assign(api, experiment["id"], "u1")["variant"]
    other = next(v for v in experiment["variants"] if v["id"] != real["id"])
    before = api(
        "POST",
        "/api/v1/experiments/conversions",
        {"experiment_id": experiment["id"], "user_id": "u1", "metric_name": "buy", "event_id": "e1"},
    )
    assert before.status == 201

    written = force(api, experiment["id"], "u1", other["name"]).json
    assert (written["warning"], written["assigned_variant"]) == ("user_already_assigned", real["name"])
    assert assign(api, experiment["id"], "u1")["variant"]["id"] == other["id"]
    during = api(
        "POST",
        "/api/v1/experiments/conversions",
        {"experiment_id": experiment["id"], "user_id": "u1", "metric_name": "buy", "event_id": "e2"},
    )
    assert (during.status, during.json["variant_id"]) == (201, other["id"])
    # A retry of the conversion stored before the override is still that conversion.
    retry = api(
        "POST",
        "/api/v1/experiments/conversions",
        {"experiment_id": experiment["id"], "user_id": "u1", "metric_name": "buy", "event_id": "e1"},
    )
    assert (retry.status, retry.headers["Idempotent-Replayed"]) == (201, "true")

    metrics = api("GET", f"{BASE}/{experiment['id']}/metrics").json
    assert metrics["variant_metrics"][real["id"]]["unique_users"] == 1
    assert metrics["variant_metrics"][real["id"]]["exposures"] == 1
    assert metrics["variant_metrics"][real["id"]]["conversions"]["buy"]["count"] == 1
    assert metrics["variant_metrics"][other["id"]]["unique_users"] == 0
    assert metrics["overrides"] == {"active": 1, "users": 1, "exposures": 1, "conversions": 1}

    assert api("DELETE", f"{BASE}/{experiment['id']}/overrides/u1").status == 204
    back = assign(api, experiment["id"], "u1")
    assert (back["variant"]["id"], back["source"]) == (real["id"], "assignment")
    assert sql("SELECT variant_id::text FROM assignments WHERE user_id = 'u1'") == [(real["id"],)]


def test_forced_events_are_accepted_and_kept_out_of_metrics_and_results(api: Any, sql: Any) -> None:
    experiment = start(api)
    experiment_id = experiment["id"]
    for n in range(6):
        assign(api, experiment_id, f"real-{n}")
    force(api, experiment_id, "qa", "treatment")
    assign(api, experiment_id, "qa")
    body = {"experiment_id": experiment_id, "user_id": "qa", "metric_name": "buy", "value": 5.0}
    first = api("POST", "/api/v1/experiments/conversions", {**body, "event_id": "c1"})
    assert first.status == 201
    assert first.headers["Idempotent-Replayed"] == "false"
    replay = api("POST", "/api/v1/experiments/conversions", {**body, "event_id": "c1"})
    assert (replay.status, replay.headers["Idempotent-Replayed"], replay.json) == (201, "true", first.json)
    reused = api("POST", "/api/v1/experiments/conversions", {**body, "value": 6.0, "event_id": "c1"})
    assert (reused.status, reused.json["error"]) == (409, "event_id_reused")
    no_id = api("POST", "/api/v1/experiments/conversions", body)
    assert no_id.status == 201

    events = [
        {"type": "exposure", "experiment_id": experiment_id, "user_id": "qa", "event_id": "x1"},
        {"type": "conversion", "experiment_id": experiment_id, "user_id": "qa", "event_id": "c2",
         "metric_name": "forced.only"},
        {"type": "conversion", "experiment_id": experiment_id, "user_id": "qa", "event_id": "c1",
         "metric_name": "buy", "value": 5.0},
        {"type": "conversion", "experiment_id": experiment_id, "user_id": "real-0", "event_id": "r1",
         "metric_name": "buy"},
    ]  # fmt: skip
    batch = api("POST", "/api/v1/events", {"events": events}).json
    assert [r["status"] for r in batch["results"]] == ["accepted", "accepted", "duplicate", "accepted"]
    again = api("POST", "/api/v1/events", {"events": events}).json
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 4

    counts = stored_counts(sql)
    assert counts["override_exposures"] == 2
    assert counts["override_conversions"] == 3
    assert counts["conversions"] == 1
    assert counts["assignments"] == 6
    # The forced user's metric name is not one of the experiment's metrics.
    assert sql("SELECT metric_name FROM experiment_metrics") == [("buy",)]

    for _ in range(2):  # before and after the rollup: the same answer
        metrics = api("GET", f"{BASE}/{experiment_id}/metrics").json
        results = api("GET", f"{BASE}/{experiment_id}/results").json
        assert sum(v["unique_users"] for v in metrics["variant_metrics"].values()) == 6
        assert sum(v["conversions"]["buy"]["count"] for v in metrics["variant_metrics"].values()) == 1
        assert sum(v["users"] for v in results["variants"]) == 6
        assert set(results["metrics"]) == {"buy"}
        expected = {"active": 1, "users": 1, "exposures": 2, "conversions": 3}
        assert metrics["overrides"] == results["overrides"] == expected
        rollup()

    # The override goes; the user's forced history stays counted apart, never in the analysis.
    api("DELETE", f"{BASE}/{experiment_id}/overrides/qa")
    metrics = api("GET", f"{BASE}/{experiment_id}/metrics").json
    assert metrics["overrides"] == {"active": 0, "users": 1, "exposures": 2, "conversions": 3}
    page = api("GET", f"{BASE}/{experiment_id}/report")
    assert page.status == 200
    assert 'id="overrides"' in page.text
    assert '<span class="override-users">1</span> users with events, 2 exposures, 3 conversions' in page.text
    late = api("POST", "/api/v1/experiments/conversions", {**body, "event_id": "c1"})
    assert late.headers["Idempotent-Replayed"] == "true"  # still the forced conversion stored before


def test_on_a_surface_the_oldest_override_of_a_running_experiment_wins(api: Any, sql: Any) -> None:
    a = start(api, "ov_a", namespace_share=0.5)
    b = start(api, "ov_b", namespace_share=0.5)
    paused = start(api, "ov_p", surface="other")
    member = next(
        f"m{n}" for n in range(500) if recommend(api, f"m{n}")["experiment_id"] == a["id"]
    )  # a member of a
    force(api, paused["id"], member, "control")  # another surface: irrelevant here
    force(api, b["id"], member, "treatment")
    force(api, a["id"], member, "control")  # newer than b's
    served = recommend(api, member)
    assert (served["experiment_id"], served["source"]) == (b["id"], "override")
    assert served["experiment_variant"] == "ov_b:treatment"
    api("PUT", f"{BASE}/{b['id']}/status", {"status": "paused"})
    served = recommend(api, member)  # b is not running: a's override applies
    assert (served["experiment_id"], served["experiment_variant"]) == (a["id"], "ov_a:control")
    api("DELETE", f"{BASE}/{a['id']}/overrides/{member}")
    served = recommend(api, member)  # back to the membership
    assert (served["experiment_id"], served["source"]) == (a["id"], "assignment")
    assert sql("SELECT experiment_id::text FROM namespace_members WHERE user_id = %s", (member,)) == [
        (a["id"],)
    ]


def test_a_forced_user_on_another_surface_does_not_join_the_namespace(api: Any, sql: Any) -> None:
    experiment = start(api, surface="checkout")
    force(api, experiment["id"], "qa", "control")
    served = recommend(api, "qa", surface="checkout")
    assert (served["source"], served["experiment_variant"]) == ("override", "ov_exp:control")
    assert sql("SELECT count(*) FROM namespace_members") == [(0,)]


def test_the_bound_on_overrides_holds_under_concurrent_writes(
    api: Any, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import abtest.domain.overrides

    monkeypatch.setattr(abtest.domain.overrides, "MAX_OVERRIDES_PER_EXPERIMENT", 5)
    experiment = start(api)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda n: force(api, experiment["id"], f"qa-{n}", "control").status, range(12))
        )
    assert sorted(statuses) == [200] * 5 + [409] * 7
    assert sql("SELECT count(*) FROM experiment_overrides") == [(5,)]
    # Changing an existing one still fits.
    stored = sql("SELECT user_id FROM experiment_overrides LIMIT 1")[0][0]
    assert force(api, experiment["id"], stored, "treatment").status == 200
    refused = force(api, experiment["id"], "one-more", "control").json
    assert (refused["error"], refused["field"]) == ("too_many_overrides", "user_id")


def test_racing_requests_for_a_forced_user_store_nothing(api: Any, sql: Any) -> None:
    experiment = start(api)
    force(api, experiment["id"], "qa", "treatment")
    barrier = threading.Barrier(8)

    def hit(n: int) -> str:
        barrier.wait()
        if n % 2:
            return str(assign(api, experiment["id"], "qa")["source"])
        return str(recommend(api, "qa")["source"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(hit, range(8))) == {"override"}
    counts = stored_counts(sql)
    assert (counts["assignments"], counts["namespace_members"], counts["exposures"]) == (0, 0, 0)
    assert counts["override_exposures"] == 8


def test_a_put_racing_enrollment_never_leaves_a_forced_user_half_stored(api: Any, sql: Any) -> None:
    """Enrollments and a PUT at once: whichever commits first, the user ends with at most one
    assignment, no forced exposure in the analysed tables, and the override served afterwards."""
    experiment = start(api)
    barrier = threading.Barrier(6)

    def hit(n: int) -> int:
        barrier.wait()
        if n == 0:
            return force(api, experiment["id"], "racer", "control").status
        return 200 if assign(api, experiment["id"], "racer")["reason"] in ("assigned", "override") else 500

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(hit, range(6))) == [200] * 6
    assert sql("SELECT count(*) FROM assignments WHERE user_id = 'racer'")[0][0] <= 1
    assert assign(api, experiment["id"], "racer")["source"] == "override"
    forced = sql("SELECT count(*) FROM override_exposures")[0][0]
    exposures = sql("SELECT count(*) FROM exposures")[0][0]
    assert forced + exposures == 6  # every request recorded exactly one exposure, in one table
