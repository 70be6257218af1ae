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
