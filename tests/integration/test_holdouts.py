"""Holdouts through the handlers and the repositories against PostgreSQL: validation, lifecycle,
held-out users never enrolled, membership recorded, holdout conversions, results, and the enrollment
statement's guard against a stale cache."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from abtest.contract.holdouts import holdout_group, holdout_size
from abtest.domain.assignment import EnrollRequest, Reason
from abtest.domain.serving import AssignmentService
from abtest.storage import AssignmentRepository, CatalogRepository, HoldoutRepository
from abtest.storage.database import get_database
from tests.integration.test_experiments_api import BASE, create, set_status

HOLDOUTS = "/api/v1/holdouts"
RECS = "/api/v1/recommendations"


def new_holdout(api: Any, name: str = "q1_holdout", percent: float = 0.1, **cover: Any) -> dict[str, Any]:
    body = {"name": name, "percent": percent, **(cover or {"surfaces": ["recommendations"]})}
    response = api("POST", HOLDOUTS, body)
    assert response.status == 201, response
    created: dict[str, Any] = response.json
    return created


def holdout_status(api: Any, holdout_id: str, status: str) -> Any:
    return api("PUT", f"{HOLDOUTS}/{holdout_id}/status", {"status": status})


def running_holdout(api: Any, **kwargs: Any) -> dict[str, Any]:
    holdout = new_holdout(api, **kwargs)
    response = holdout_status(api, holdout["id"], "running")
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def running_experiment(api: Any, name: str = "exp", surface: str = "recommendations") -> dict[str, Any]:
    experiment = create(api, name=name, surface=surface, traffic_allocation=1.0)
    assert set_status(api, experiment["id"], "running").status == 200
    return experiment


def group_of(holdout: dict[str, Any], user: str) -> str | None:
    return holdout_group(holdout["salt"], user, holdout_size(holdout["percent"]))


def users_by_group(holdout: dict[str, Any], n: int = 400) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {"holdout": [], "measurement": [], None: []}
    for i in range(n):
        user = f"user-{i}"
        out[group_of(holdout, user)].append(user)
    return out


# ---------------------------------------------------------------------------------------------------
# Create, read, list, lifecycle


def test_create_returns_a_draft_with_its_own_salt(api: Any, sql: Any) -> None:
    response = api(
        "POST", HOLDOUTS, {"name": "h1", "percent": 0.05, "surfaces": ["recommendations", "checkout"]}
    )
    assert response.status == 201, response
    body = response.json
    assert response.headers["Location"] == f"{HOLDOUTS}/{body['id']}"
    assert body["status"] == "draft"
    assert (body["percent"], body["surfaces"], body["all_surfaces"]) == (
        0.05,
        ["recommendations", "checkout"],
        False,
    )
    assert str(UUID(body["salt"])) == body["salt"]
    everywhere = new_holdout(api, "h2", 0.0001, all=True)
    assert (everywhere["surfaces"], everywhere["all_surfaces"]) == (None, True)
    assert everywhere["salt"] != body["salt"]
    assert api("GET", f"{HOLDOUTS}/{body['id']}").json == body
    assert sql("SELECT count(*) FROM holdouts") == [(2,)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "h", "percent": 0.05}, "surfaces"),
        ({"name": "h", "percent": 0.05, "surfaces": ["a"], "all": True}, "surfaces"),
        ({"name": "h", "percent": 0.05, "all": False}, "all"),
        ({"name": "h", "percent": 0.05, "all": "yes"}, "all"),
        ({"name": "h", "percent": 0.05, "surfaces": []}, "surfaces"),
        ({"name": "h", "percent": 0.05, "surfaces": ["a", "a"]}, "surfaces"),
        ({"name": "h", "percent": 0.05, "surfaces": ["Bad Surface"]}, "surfaces[0]"),
        ({"name": "h", "percent": 0.2, "all": True}, "percent"),
        ({"name": "h", "percent": 0, "all": True}, "percent"),
        ({"name": "h", "percent": -0.01, "all": True}, "percent"),
        ({"name": "h", "percent": 0.00005, "all": True}, "percent"),
        ({"name": "h", "percent": "0.05", "all": True}, "percent"),
        ({"name": "h", "all": True}, "percent"),
        ({"name": "bad name", "percent": 0.05, "all": True}, "name"),
        ({"name": "h", "percent": 0.05, "all": True, "salt": "mine"}, "salt"),
    ],
)
def test_invalid_create_is_422_naming_the_field_and_stores_nothing(
    api: Any, sql: Any, body: dict[str, Any], field: str
) -> None:
    response = api("POST", HOLDOUTS, body)
    assert response.status == 422, response
    assert response.json["field"] == field, response.json
    assert sql("SELECT count(*) FROM holdouts") == [(0,)]


def test_duplicate_name_is_409(api: Any, sql: Any) -> None:
    new_holdout(api, "same")
    response = api("POST", HOLDOUTS, {"name": "same", "percent": 0.02, "all": True})
    assert (response.status, response.json["error"], response.json["field"]) == (
        409,
        "duplicate_name",
        "name",
    )
    assert sql("SELECT percent::float8 FROM holdouts") == [(0.1,)]


def test_unknown_and_malformed_ids(api: Any) -> None:
    missing = api("GET", f"{HOLDOUTS}/00000000-0000-4000-8000-000000000000")
    assert (missing.status, missing.json["error"]) == (404, "holdout_not_found")
    assert api("GET", f"{HOLDOUTS}/not-a-uuid").status == 404
    status = holdout_status(api, "00000000-0000-4000-8000-000000000000", "running")
    assert status.status == 404
    results = api("GET", f"{HOLDOUTS}/00000000-0000-4000-8000-000000000000/results")
    assert (results.status, results.json["error"]) == (404, "holdout_not_found")


def test_list_pages_oldest_first(api: Any) -> None:
    ids = [new_holdout(api, f"h{n}")["id"] for n in range(3)]
    first = api("GET", HOLDOUTS, query="limit=2").json
    assert [h["id"] for h in first["holdouts"]] == ids[:2]
    rest = api("GET", HOLDOUTS, query=f"limit=2&cursor={first['next_cursor']}").json
    assert ([h["id"] for h in rest["holdouts"]], rest["next_cursor"]) == (ids[2:], None)
    assert api("GET", HOLDOUTS, query="limit=0").status == 422


def test_lifecycle_is_the_experiments_one(api: Any) -> None:
    holdout = new_holdout(api)
    hid = holdout["id"]
    refused = holdout_status(api, hid, "paused")
    assert (refused.status, refused.json["error"], refused.json["allowed"]) == (
        409,
        "invalid_transition",
        ["running"],
    )
    running = holdout_status(api, hid, "running").json
    assert running["status"] == "running"
    assert running["started_at"] is not None
    assert holdout_status(api, hid, "running").json == running  # a no-op
    assert holdout_status(api, hid, "paused").json["status"] == "paused"
    assert holdout_status(api, hid, "running").json["started_at"] == running["started_at"]
    completed = holdout_status(api, hid, "completed").json
    assert completed["completed_at"] is not None
    again = holdout_status(api, hid, "running")
    assert (again.status, again.json["allowed"]) == (409, [])
    assert holdout_status(api, hid, "finished").status == 422


# ---------------------------------------------------------------------------------------------------
# Serving


def test_held_out_users_are_never_enrolled_and_members_are_recorded(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    holdout = running_holdout(api)
    other = running_holdout(api, name="checkout_only", surfaces=["checkout"])
    groups = users_by_group(holdout)
    assert len(groups["holdout"]) > 15
    assert len(groups["measurement"]) > 15
    for user in groups["holdout"]:
        body = api("POST", RECS, {"user_id": user, "limit": 1}).json
        assert (body["reason"], body["experiment_variant"], body["experiment_id"]) == ("holdout", None, None)
        asked = api("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": user}).json
        assert (asked["reason"], asked["enrolled"], asked["exposure_recorded"]) == ("holdout", False, False)
    for user in groups["measurement"] + groups[None][:50]:
        body = api("POST", RECS, {"user_id": user, "limit": 1}).json
        assert body["reason"] == "assigned", body
    held = [(u,) for u in sorted(groups["holdout"])]
    in_holdout = "SELECT user_id FROM {} WHERE user_id = ANY(%s) ORDER BY 1"
    assert sql(in_holdout.format("assignments"), (groups["holdout"],)) == []
    assert sql(in_holdout.format("exposures"), (groups["holdout"],)) == []
    assert sql(in_holdout.format("namespace_members"), (groups["holdout"],)) == []
    recorded = sql(
        'SELECT user_id, "group" FROM holdout_members WHERE holdout_id = %s ORDER BY 1', (holdout["id"],)
    )
    expected = sorted(
        [(u, "holdout") for u in groups["holdout"]] + [(u, "measurement") for u in groups["measurement"]]
    )
    assert recorded == expected
    assert held  # and the checkout holdout saw nobody: it does not cover recommendations
    assert sql("SELECT count(*) FROM holdout_members WHERE holdout_id = %s", (other["id"],)) == [(0,)]


def test_a_stored_assignment_from_before_the_holdout_is_held_out_until_it_pauses(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    holdout = new_holdout(api)
    user = users_by_group(holdout)["holdout"][0]
    before = api("POST", RECS, {"user_id": user, "limit": 1}).json
    assert before["reason"] == "assigned"
    assert holdout_status(api, holdout["id"], "running").status == 200
    exposures = sql("SELECT count(*) FROM exposures")
    during = api("POST", RECS, {"user_id": user, "limit": 1}).json
    assert (during["reason"], during["experiment_variant"]) == ("holdout", None)
    assert sql("SELECT count(*) FROM exposures") == exposures  # not exposed while held out
    assert holdout_status(api, holdout["id"], "paused").status == 200
    after = api("POST", RECS, {"user_id": user, "limit": 1}).json
    assert after["experiment_variant"] == before["experiment_variant"]
    assert sql("SELECT count(*) FROM assignments WHERE experiment_id = %s", (experiment["id"],)) == [(1,)]


def test_a_forced_user_is_served_and_exposed_as_forced_even_when_held_out(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    holdout = running_holdout(api)
    user = users_by_group(holdout)["holdout"][0]
    variant = experiment["variants"][1]["name"]
    forced = api("PUT", f"{BASE}/{experiment['id']}/overrides/{user}", {"variant": variant})
    assert forced.status == 200, forced
    asked = api("POST", "/api/v1/assignments", {"experiment_id": experiment["id"], "user_id": user}).json
    assert (asked["reason"], asked["source"], asked["variant"]["name"]) == ("override", "override", variant)
    assert asked["exposure_recorded"] is True
    body = api("POST", RECS, {"user_id": user, "limit": 1}).json
    assert (body["reason"], body["source"]) == ("override", "override")
    # Recorded where the analysis never reads it; nothing stored as an assignment or a real exposure.
    assert sql("SELECT count(*) FROM override_exposures WHERE user_id = %s", (user,)) == [(2,)]
    assert sql("SELECT count(*) FROM exposures WHERE user_id = %s", (user,)) == [(0,)]
    assert sql("SELECT count(*) FROM assignments WHERE user_id = %s", (user,)) == [(0,)]


class CountingRepository(AssignmentRepository):
    """The real repository, counting enrollment statements (the hot path's round trips)."""

    statements = 0

    def enroll(self, request: EnrollRequest) -> Any:
        self.statements += 1
        return super().enroll(request)


def test_a_stale_cache_is_caught_by_the_statement_and_reloaded(api: Any, sql: Any) -> None:
    running_experiment(api)
    holdout = new_holdout(api)
    users = users_by_group(holdout)
    db = get_database()
    repository = CountingRepository(db)
    service = AssignmentService(repository, CatalogRepository(db), experiment_ttl=3600, catalog_ttl=3600)
    warm = users[None][0]
    assert service.recommendations(warm, 1, surface="recommendations").assignment is not None  # cache loaded
    holdout_status(api, holdout["id"], "running")  # the cache (an hour's TTL) does not know

    held = users["holdout"][0]
    repository.statements = 0
    result = service.recommendations(held, 1, surface="recommendations")
    assert result.assignment is not None
    assert result.assignment.reason == Reason.HOLDOUT
    assert repository.statements == 2  # the stale one wrote nothing; reloaded, the second decided
    assert sql("SELECT count(*) FROM assignments WHERE user_id = %s", (held,)) == [(0,)]
    assert sql("SELECT count(*) FROM holdout_members WHERE user_id = %s", (held,)) == [(1,)]
    repository.statements = 0
    again = service.recommendations(users["holdout"][1], 1, surface="recommendations")
    assert again.assignment is not None
    assert again.assignment.reason == Reason.HOLDOUT
    assert repository.statements == 1  # warm again: one round trip

    holdout_status(api, holdout["id"], "paused")  # the other way: the cache holds a holdout no longer running
    result = service.recommendations(held, 1, surface="recommendations")
    assert result.assignment is not None
    assert result.assignment.reason == Reason.ASSIGNED


def test_the_enrollment_statement_writes_nothing_when_the_holdouts_differ(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    holdout = running_holdout(api)
    user = users_by_group(holdout)[None][0]
    variant = UUID(experiment["variants"][0]["id"])
    repository = AssignmentRepository(get_database())
    request = EnrollRequest(
        surface="recommendations",
        user_id=user,
        experiment_id=UUID(experiment["id"]),
        variant_id=variant,
        follow_membership=True,
    )
    stale = repository.enroll(request)  # the caller knows no holdout: stale
    assert (stale.holdouts_stale, stale.created, stale.exposed, stale.variant_id) == (
        True,
        False,
        False,
        None,
    )
    for table in ("assignments", "exposures", "namespace_members", "holdout_members"):
        assert sql(f"SELECT count(*) FROM {table}") == [(0,)], table
    fresh = repository.enroll(EnrollRequest(**{**request.__dict__, "holdout_ids": (UUID(holdout["id"]),)}))
    assert (fresh.holdouts_stale, fresh.created, fresh.exposed, fresh.variant_id) == (
        False,
        True,
        True,
        variant,
    )


# ---------------------------------------------------------------------------------------------------
# Conversions and results


def convert(api: Any, experiment_id: str, user: str, event_id: str, **extra: Any) -> Any:
    body = {
        "experiment_id": experiment_id,
        "user_id": user,
        "metric_name": "purchase",
        "event_id": event_id,
        **extra,
    }
    return api("POST", "/api/v1/experiments/conversions", body)


def test_conversions_of_holdout_members_are_accepted_and_idempotent(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    holdout = running_holdout(api)
    groups = users_by_group(holdout)
    held, stranger = groups["holdout"][0], groups[None][0]
    api("POST", RECS, {"user_id": held, "limit": 1})
    first = convert(api, experiment["id"], held, "h-1", value=2.5)
    assert first.status == 201, first
    assert (first.json["variant_id"], first.json["holdout_conversion"]) == (None, True)
    again = convert(api, experiment["id"], held, "h-1", value=2.5)
    assert (again.status, again.headers["Idempotent-Replayed"], again.json) == (201, "true", first.json)
    reused = convert(api, experiment["id"], held, "h-1", value=3.0)
    assert (reused.status, reused.json["error"]) == (409, "event_id_reused")
    refused = convert(api, experiment["id"], stranger, "s-1")
    assert (refused.status, refused.json["error"]) == (422, "user_not_assigned")
    assert sql("SELECT user_id, value FROM holdout_conversions") == [(held, 2.5)]
    assert sql("SELECT count(*) FROM conversions") == [(0,)]

    batch = api(
        "POST",
        "/api/v1/events",
        {
            "events": [
                {
                    "type": "conversion",
                    "experiment_id": experiment["id"],
                    "user_id": held,
                    "event_id": "h-2",
                    "metric_name": "purchase",
                },
                {
                    "type": "conversion",
                    "experiment_id": experiment["id"],
                    "user_id": held,
                    "event_id": "h-1",
                    "metric_name": "purchase",
                    "value": 2.5,
                },
                {
                    "type": "conversion",
                    "experiment_id": experiment["id"],
                    "user_id": stranger,
                    "event_id": "s-2",
                    "metric_name": "purchase",
                },
            ]
        },
    ).json
    assert [(r["status"], r["error"]) for r in batch["results"]] == [
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "user_not_assigned"),
    ]
    assert sql("SELECT count(*) FROM holdout_conversions") == [(2,)]
    # A paused holdout holds nobody out, and accepts no more conversions without an assignment.
    holdout_status(api, holdout["id"], "paused")
    assert convert(api, experiment["id"], held, "h-3").json["error"] == "user_not_assigned"


def test_results_compare_the_two_groups(api: Any, sql: Any) -> None:
    experiment = running_experiment(api)
    checkout = running_experiment(api, "checkout_exp", surface="checkout")
    holdout = running_holdout(api, surfaces=["recommendations", "checkout"])
    groups = users_by_group(holdout, 600)
    held, measured = groups["holdout"], groups["measurement"]
    for user in held + measured:
        api("POST", RECS, {"user_id": user, "limit": 1})
    # Holdout: the first third converts once (value 1) through holdout conversions.
    for user in held[: len(held) // 3]:
        assert convert(api, experiment["id"], user, f"{user}-1").status == 201
    # Measurement: the first half converts (value 2) as enrolled users; each also sends the same event
    # to the checkout experiment (as a holdout conversion there: not enrolled on checkout), which
    # must count once.
    for user in measured[: len(measured) // 2]:
        assert convert(api, experiment["id"], user, f"{user}-1", value=2.0).status == 201
        response = convert(api, checkout["id"], user, f"{user}-1", value=2.0)
        assert response.status == 201, response
        assert response.json["holdout_conversion"], response
    # Before the user was first seen (after the experiment's start: never earlier): does not count.
    sql(
        "UPDATE experiments SET started_at = '2019-12-31T00:00:00Z' WHERE id = %s RETURNING id",
        (experiment["id"],),
    )
    early = convert(api, experiment["id"], held[-1], "early", timestamp="2020-01-01T00:00:00Z")
    assert early.status == 201
    response = api("GET", f"{HOLDOUTS}/{holdout['id']}/results")
    assert response.status == 200, response
    body = response.json
    assert [(g["name"], g["role"], g["users"]) for g in body["groups"]] == [
        ("holdout", "control", len(held)),
        ("measurement", "treatment", len(measured)),
    ]
    assert body["srm"]["p_value"] is not None
    assert not body["srm"]["flag"]
    assert list(body["metrics"]) == ["purchase"]
    conversion = body["metrics"]["purchase"]["conversion"]
    value = body["metrics"]["purchase"]["value"]
    control, treatment = len(held) // 3 / len(held), (len(measured) // 2) / len(measured)
    assert conversion["comparisons"][0]["absolute"]["estimate"] == pytest.approx(treatment - control)
    means = (len(held) // 3 / len(held), 2.0 * (len(measured) // 2) / len(measured))
    assert value["comparisons"][0]["absolute"]["estimate"] == pytest.approx(means[1] - means[0])
    assert body["metrics_truncated"] is False

    stats = HoldoutRepository(get_database()).stats(UUID(holdout["id"]))
    assert stats.metrics["purchase"]["holdout"].users == len(held) // 3
    assert stats.metrics["purchase"]["measurement"].sum == pytest.approx(2.0 * (len(measured) // 2))
    # The experiment's own results never see holdout conversions.
    assert sql("SELECT count(*) FROM conversions WHERE experiment_id = %s", (checkout["id"],)) == [(0,)]


def test_results_of_a_holdout_without_members(api: Any) -> None:
    holdout = new_holdout(api)
    body = api("GET", f"{HOLDOUTS}/{holdout['id']}/results").json
    assert [g["users"] for g in body["groups"]] == [0, 0]
    srm = {"p_value": None, "flag": False, "sequential_p_value": None, "sequential_flag": False}
    assert (body["srm"], body["metrics"]) == (srm, {})
    assert api("GET", f"{HOLDOUTS}/{holdout['id']}/results", query="alpha=2").status == 422


def test_holdout_routes_need_their_scopes(api: Any) -> None:
    read_only = ("abtest/read",)
    refused = api("POST", HOLDOUTS, {"name": "h", "percent": 0.05, "all": True}, scopes=read_only)
    assert (refused.status, refused.json["error"]) == (403, "insufficient_scope")
    assert api("GET", HOLDOUTS, scopes=read_only).status == 200
    assert api("GET", BASE, scopes=read_only).status == 200
