"""Namespaces through the handlers against PostgreSQL: siblings split a surface in proportion, never
share a user across pause/resume/complete, over-allocation is a 409, and the /surfaces routes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from abtest.contract.namespaces import NAMESPACE_BUCKETS, buckets_in, namespace_bucket
from abtest.domain.assignment import EnrollRequest
from tests.integration.test_assignments_api import assign
from tests.integration.test_assignments_api import catalog as catalog  # the fixture
from tests.integration.test_experiments_api import BASE, create, set_status

stats: Any
try:
    from scipy import stats
except ImportError:  # test-only dependency
    stats = None

RECS = "/api/v1/recommendations"


def started(api: Any, name: str, share: float, **overrides: Any) -> dict[str, Any]:
    experiment = create(api, name=name, namespace_share=share, traffic_allocation=1.0, **overrides)
    response = set_status(api, experiment["id"], "running")
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def recommend(api: Any, user: str, **extra: Any) -> dict[str, Any]:
    response = api("POST", RECS, {"user_id": user, "limit": 1, **extra})
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def users_in_two(sql: Any) -> list[tuple[Any, ...]]:
    """Users assigned in two experiments of one surface, both not completed."""
    rows: list[tuple[Any, ...]] = sql(
        "SELECT a.user_id FROM assignments a JOIN experiments e ON e.id = a.experiment_id"
        " WHERE e.status <> 'completed' GROUP BY e.surface, a.user_id HAVING count(*) > 1"
    )
    return rows


def test_two_half_shares_both_receive_users_in_proportion(api: Any, sql: Any) -> None:
    a = started(api, "half_a", 0.5)
    b = started(api, "half_b", 0.5)
    counts = {a["id"]: 0, b["id"]: 0}
    for n in range(300):
        body = recommend(api, f"new-{n}")
        assert body["reason"] == "assigned"
        counts[body["experiment_id"]] += 1
        assert body["experiment_variant"].split(":")[0] in ("half_a", "half_b")
    assert min(counts.values()) > 100
    if stats is not None:
        assert stats.chisquare(list(counts.values())).pvalue > 0.001
    assert users_in_two(sql) == []
    surface = api("GET", "/api/v1/surfaces/recommendations").json
    assert surface["free_share"] == 0
    shares = {e["experiment_id"]: e["share"] for e in surface["experiments"]}
    assert shares == {a["id"]: 0.5, b["id"]: 0.5}
    owned = [set(buckets_in(map(tuple, e["buckets"]))) for e in surface["experiments"]]
    assert not owned[0] & owned[1]
    assert len(owned[0] | owned[1]) == NAMESPACE_BUCKETS


def test_a_share_larger_than_the_free_space_is_a_409_naming_it(api: Any, sql: Any) -> None:
    started(api, "first", 0.5)
    started(api, "second", 0.3)
    third = create(api, name="third", namespace_share=0.25)
    response = set_status(api, third["id"], "running")
    assert response.status == 409
    assert response.json["error"] == "namespace_full"
    assert response.json["field"] == "namespace_share"
    assert response.json["free_share"] == pytest.approx(0.2)
    assert "free share is 0.2" in response.json["message"]
    assert api("GET", f"{BASE}/{third['id']}").json["status"] == "draft"  # nothing half-written
    assert sql("SELECT count(*) FROM namespace_buckets WHERE experiment_id = %s", (third["id"],)) == [(0,)]
    # It fits once its share does.
    assert api("PATCH", f"{BASE}/{third['id']}", {"namespace_share": 0.2}).status == 200
    assert set_status(api, third["id"], "running").status == 200


def test_pause_resume_complete_never_puts_a_user_in_two(api: Any, sql: Any, catalog: None) -> None:
    a = started(api, "seq_a", 0.5)
    b = started(api, "seq_b", 0.5)
    users = [f"seq-{n}" for n in range(50)]
    first = {u: recommend(api, u) for u in users}
    members_a = [u for u, body in first.items() if body["experiment_id"] == a["id"]]
    assert members_a

    for status in ("paused", "running", "paused"):
        assert set_status(api, a["id"], status).status == 200
        for user in users:
            body = recommend(api, user)
            assign(api, b["id"], user)
            if user in members_a:
                assert body["experiment_id"] == (a["id"] if status == "running" else None)
                if status == "paused":
                    assert body["experiment_variant"] is None
                    assert body["reason"] == "experiment_not_running"
                    assert {i["experiment_variant"] for i in body["recommendations"]} == {None}
        assert users_in_two(sql) == []

    assert set_status(api, a["id"], "completed").status == 200
    for user in members_a:
        body = recommend(api, user)  # a's buckets are free again; b's share never grew
        assert body["experiment_id"] is None
        assert body["reason"] == "not_in_experiment_share"
        assert assign(api, b["id"], user).json["reason"] == "not_in_experiment_share"
    assert sql(
        "SELECT count(*) FROM assignments WHERE experiment_id = %s AND user_id = ANY(%s)",
        (b["id"], members_a),
    ) == [(0,)]


def test_assignments_enroll_only_users_whose_bucket_is_the_experiments(api: Any, sql: Any) -> None:
    a = started(api, "own_a", 0.5)
    b = started(api, "own_b", 0.5)
    salt = api("GET", "/api/v1/surfaces/recommendations").json["salt"]
    rows = sql("SELECT bucket FROM namespace_buckets WHERE experiment_id = %s", (a["id"],))
    owned_by_a = {bucket for (bucket,) in rows}
    for n in range(60):
        user = f"own-{n}"
        body = assign(api, a["id"], user).json
        if namespace_bucket(salt, user) in owned_by_a:
            assert body["reason"] in ("assigned", "excluded_by_traffic")
            assert body["enrolled"] == (body["reason"] == "assigned")
        else:
            assert (body["enrolled"], body["reason"]) == (False, "not_in_experiment_share")
            assert assign(api, b["id"], user).json["enrolled"] is True


def test_the_membership_guards_against_a_stale_proposal(api: Any, sql: Any) -> None:
    from abtest.storage import AssignmentRepository
    from abtest.storage.database import get_database

    a = started(api, "guard_a", 0.5)
    b = started(api, "guard_b", 0.5)
    user = "guard-user"
    repo = AssignmentRepository(get_database())
    first = repo.enroll(
        EnrollRequest("recommendations", user, UUID(a["id"]), UUID(a["variants"][0]["id"]), False)
    )
    assert first.created
    # A container with a wrong idea of the owner proposes b: refused, and the member is reported.
    second = repo.enroll(
        EnrollRequest("recommendations", user, UUID(b["id"]), UUID(b["variants"][0]["id"]), False)
    )
    assert (second.variant_id, second.created, second.member_of) == (None, False, UUID(a["id"]))
    assert sql("SELECT count(*) FROM assignments WHERE user_id = %s", (user,)) == [(1,)]


def test_growing_a_running_share_keeps_its_buckets_and_shrinking_is_refused(api: Any, sql: Any) -> None:
    a = started(api, "grow", 0.3)
    before = {b for (b,) in sql("SELECT bucket FROM namespace_buckets WHERE experiment_id = %s", (a["id"],))}
    assert len(before) == 3000
    response = api("PATCH", f"{BASE}/{a['id']}", {"namespace_share": 0.6})
    assert response.status == 200, response
    after = {b for (b,) in sql("SELECT bucket FROM namespace_buckets WHERE experiment_id = %s", (a["id"],))}
    assert before < after
    assert len(after) == 6000
    shrink = api("PATCH", f"{BASE}/{a['id']}", {"namespace_share": 0.5})
    assert (shrink.status, shrink.json["error"], shrink.json["field"]) == (
        409,
        "share_decrease",
        "namespace_share",
    )
    started(api, "rest", 0.4)
    too_much = api("PATCH", f"{BASE}/{a['id']}", {"namespace_share": 0.7})
    assert (too_much.status, too_much.json["error"], too_much.json["free_share"]) == (
        409,
        "namespace_full",
        0.0,
    )


def test_completed_experiments_release_buckets_for_a_later_one(api: Any, sql: Any, catalog: None) -> None:
    a = started(api, "old", 1.0)
    user_of_a = next(f"c-{n}" for n in range(50) if recommend(api, f"c-{n}")["experiment_id"] == a["id"])
    assert set_status(api, a["id"], "completed").status == 200
    surface = api("GET", "/api/v1/surfaces/recommendations").json
    assert (surface["free_share"], surface["experiments"]) == (1.0, [])
    b = started(api, "new", 1.0)
    body = recommend(api, user_of_a)  # the policy: a completed experiment's users may join a later one
    assert body["experiment_id"] == b["id"]
    lookup = api("GET", f"/api/v1/surfaces/recommendations/assignments/{user_of_a}").json
    assert (lookup["experiment_id"], lookup["enrolled"]) == (b["id"], True)
    assert lookup["experiment_variant"] == body["experiment_variant"]


def test_surface_routes(api: Any, sql: Any, catalog: None) -> None:
    a = started(api, "view_a", 0.25)
    draft = create(api, name="view_draft", namespace_share=0.5)
    other = started(
        api,
        "view_checkout",
        1.0,
        surface="checkout",
        variants=[
            {"name": "a", "weight": 0.5, "config": {"x": 1}},
            {"name": "b", "weight": 0.5, "config": {"x": 2}},
        ],
    )
    listing = api("GET", "/api/v1/surfaces")
    assert listing.status == 200
    by_name = {s["surface"]: s for s in listing.json["surfaces"]}
    assert set(by_name) == {"recommendations", "checkout"}
    recs = by_name["recommendations"]
    assert (recs["free_share"], recs["free_buckets"], recs["total_buckets"]) == (0.75, 7500, 10_000)
    members = {e["name"]: e for e in recs["experiments"]}
    assert members["view_a"]["status"] == "running"
    assert members["view_a"]["share"] == 0.25
    assert sum(end - start for start, end in members["view_a"]["buckets"]) == 2500
    assert (members["view_draft"]["share"], members["view_draft"]["namespace_share"]) == (0, 0.5)
    assert by_name["checkout"]["salt"] != recs["salt"]
    assert recs["salt"] not in {a["salt"], draft["salt"], other["salt"]}

    assert listing.json["next_cursor"] is None

    missing = api("GET", "/api/v1/surfaces/nowhere")
    assert (missing.status, missing.json["error"]) == (404, "surface_not_found")
    bad = api("GET", "/api/v1/surfaces/NOT%20VALID")
    # A path parameter that cannot name anything is a 404 naming it (issue 10).
    assert (bad.status, bad.json["field"]) == (404, "surface")

    body = recommend(api, "lookup-user")
    lookup = api("GET", "/api/v1/surfaces/recommendations/assignments/lookup-user")
    assert lookup.status == 200
    found = lookup.json
    assert found["bucket"] == namespace_bucket(recs["salt"], "lookup-user")
    assert found["experiment_variant"] == body["experiment_variant"]
    assert found["enrolled"] == (body["experiment_variant"] is not None)
    never = api("GET", "/api/v1/surfaces/recommendations/assignments/never-seen").json
    assert (never["enrolled"], never["experiment_id"]) == (False, None)
    count = sql("SELECT count(*) FROM assignments WHERE user_id = 'never-seen'")
    assert count == [(0,)], "the lookup never enrolls"


def test_surfaces_are_paged_by_name(api: Any) -> None:
    # GET /surfaces answered every surface at once (223 KB for 28, growing with their bucket ranges).
    names = [f"paged-{n:02d}" for n in range(12)]
    for name in names:
        variants = [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]
        created = api("POST", BASE, {"name": name, "surface": name, "variants": variants})
        assert created.status == 201, created
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = api("GET", "/api/v1/surfaces", query=f"limit=5&cursor={cursor}" if cursor else "limit=5")
        assert page.status == 200, page
        assert len(page.json["surfaces"]) <= 5
        seen += [s["surface"] for s in page.json["surfaces"]]
        pages += 1
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names)
    assert pages == 3
    assert len(api("GET", "/api/v1/surfaces").json["surfaces"]) == 10  # the default page
    for bad in ("limit=0", "limit=51", "cursor=nope"):
        refused = api("GET", "/api/v1/surfaces", query=bad)
        assert refused.status == 422, (bad, refused)
        assert refused.json["field"] in ("limit", "cursor")
