"""Issue acceptance over real HTTP: the original example experiment, tagged as the contract predicts."""

from __future__ import annotations

from abtest.contract.bucketing import bucket_for
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body


def test_original_example_tags_as_predicted_and_pausing_stops_enrollment(http: Http) -> None:
    from abtest.storage import CatalogRepository
    from abtest.storage.database import get_database
    from localdev.seed import demo_catalog

    items, profiles = demo_catalog(n_items=200, n_users=20)
    CatalogRepository(get_database()).replace_catalog(items, profiles)
    status, _, experiment = http.request("POST", "/api/v1/experiments", experiment_body())
    assert status == 201
    path = f"/api/v1/experiments/{experiment['id']}"
    assert http.request("PUT", f"{path}/status", {"status": "running"})[0] == 200

    def predicted(user: str) -> str | None:
        index = bucket_for(user, experiment["salt"], [0.5, 0.5], 0.5)
        return (
            None
            if index is None
            else f"recommendation_algorithm_test:{experiment['variants'][index]['name']}"
        )

    users = [f"user-{n}" for n in range(1, 41)]
    for user in users:
        status, _, body = http.request("POST", "/api/v1/recommendations", {"user_id": user, "limit": 4})
        assert status == 200
        assert [item["experiment_variant"] for item in body["recommendations"]] == [predicted(user)] * 4
    enrolled = {u for u in users if predicted(u)}
    assert 5 < len(enrolled) < 35

    assert http.request("PUT", f"{path}/status", {"status": "paused"})[0] == 200
    newcomers = [f"newcomer-{n}" for n in range(40)]
    for user in newcomers:
        _, _, body = http.request("POST", "/api/v1/recommendations", {"user_id": user, "limit": 2})
        assert body["experiment_variant"] is None
        _, _, lookup = http.request("GET", f"{path}/assignments/{user}")
        assert lookup["enrolled"] is False
    for user in enrolled:
        _, _, lookup = http.request("GET", f"{path}/assignments/{user}")
        assert lookup["experiment_variant"] == predicted(user)


def test_two_experiments_share_a_surface_over_http(http: Http) -> None:
    """The issue's acceptance, through the local server: two running experiments on one surface each
    get their share of new users, pausing one serves its users untagged defaults and gives them to
    nobody, and a third asking for more than the free share gets a 409."""
    ids = []
    for name, share in (("ns_a", 0.6), ("ns_b", 0.4)):
        body = experiment_body(name, traffic_allocation=1.0, namespace_share=share)
        status, _, created = http.request("POST", "/api/v1/experiments", body)
        assert status == 201
        assert (
            http.request("PUT", f"/api/v1/experiments/{created['id']}/status", {"status": "running"})[0]
            == 200
        )
        ids.append(created["id"])
    third = http.request("POST", "/api/v1/experiments", experiment_body("ns_c", namespace_share=0.01))[2]
    status, _, refused = http.request(
        "PUT", f"/api/v1/experiments/{third['id']}/status", {"status": "running"}
    )
    assert (status, refused["error"], refused["free_share"]) == (409, "namespace_full", 0.0)

    served: dict[str, str] = {}
    for n in range(400):
        status, _, body = http.request("POST", "/api/v1/recommendations", {"user_id": f"acc-{n}", "limit": 1})
        assert (status, body["reason"]) == (200, "assigned")
        served[f"acc-{n}"] = body["experiment_id"]
    share_a = sum(1 for e in served.values() if e == ids[0]) / len(served)
    assert 0.5 < share_a < 0.7  # 0.6 expected; 5 standard errors either side

    assert http.request("PUT", f"/api/v1/experiments/{ids[0]}/status", {"status": "paused"})[0] == 200
    for user in [u for u, e in served.items() if e == ids[0]][:40]:
        body = http.request("POST", "/api/v1/recommendations", {"user_id": user, "limit": 1})[2]
        assert (body["experiment_variant"], body["reason"]) == (None, "experiment_not_running")
        assigned = http.request("POST", "/api/v1/assignments", {"user_id": user, "experiment_id": ids[1]})[2]
        assert assigned["enrolled"] is False
