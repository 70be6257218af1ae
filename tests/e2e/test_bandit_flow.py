"""A bandit through the local server (real HTTP): the acceptance scenario of docs/bandits.md.

Three arms converting at 5%, 10% and 20%; each period's users are enrolled and convert, then the
period is closed with the reweight route. The best arm's weight rises above 0.6, no arm falls below
min_weight, no enrolled user changes variant, the period-weighted estimates lie within three
standard errors of the true rates and no sample ratio mismatch is flagged, and the period-weighted
series ends at /results.
"""

from __future__ import annotations

import random
import time
import urllib.request

import pytest

from tests.e2e.conftest import Http
from tests.integration.test_bandits import bandit_body

pytestmark = pytest.mark.e2e

RATES = (0.05, 0.10, 0.20)
PERIODS = 3
USERS_PER_PERIOD = 600


def _enroll(http: Http, experiment_id: str, users: range, rng: random.Random, seen: dict[str, str]) -> None:
    names = ("a", "b", "c")
    events = []
    for n in users:
        user = f"u{n}"
        status, _, body = http.request(
            "POST", "/api/v1/assignments", {"experiment_id": experiment_id, "user_id": user}
        )
        assert status == 200, body
        variant = body["variant"]["name"]
        assert seen.setdefault(user, variant) == variant
        if rng.random() < RATES[names.index(variant)]:
            events.append(
                {
                    "type": "conversion",
                    "experiment_id": experiment_id,
                    "user_id": user,
                    "event_id": f"c-{user}",
                    "metric_name": "purchase",
                }
            )
    for start in range(0, len(events), 1000):
        status, _, body = http.request("POST", "/api/v1/events", {"events": events[start : start + 1000]})
        assert status in (200, 201, 207), body


def test_a_three_arm_bandit_moves_to_the_best_arm_and_stays_honest(http: Http) -> None:
    body = bandit_body("bandit_e2e", period_hours=24)
    status, _, experiment = http.request("POST", "/api/v1/experiments", body)
    assert status == 201, experiment
    experiment_id = experiment["id"]
    status, _, _ = http.request("PUT", f"/api/v1/experiments/{experiment_id}/status", {"status": "running"})
    assert status == 200
    rng = random.Random(2121)
    seen: dict[str, str] = {}
    weights: list[float] = []
    for period in range(PERIODS):
        _enroll(
            http, experiment_id, range(period * USERS_PER_PERIOD, (period + 1) * USERS_PER_PERIOD), rng, seen
        )
        status, _, answer = http.request("POST", f"/api/v1/experiments/{experiment_id}/bandit/reweight")
        assert status == 200, answer
        assert answer["period"]["outcome"] == "updated"
        weights = answer["weights"]
        assert min(weights) >= 0.01 - 1e-12
        time.sleep(1.1)  # the local server's experiment cache (1 s): the next users see the new weights
    assert weights[2] > 0.6
    # Every user enrolled so far is still served the same variant.
    for user in list(seen)[:: max(len(seen) // 200, 1)]:
        status, _, body = http.request("GET", f"/api/v1/experiments/{experiment_id}/assignments/{user}")
        assert status == 200, body
        assert body["variant"]["name"] == seen[user]
    status, _, results = http.request("GET", f"/api/v1/experiments/{experiment_id}/results")
    assert status == 200, results
    assert results["srm"]["flag"] is False
    for arm, rate in zip(results["bandit"]["arms"], RATES, strict=True):
        assert abs(arm["mean"] - rate) < 3 * arm["standard_error"], arm
    # The series is period-weighted too: its last point is /results, and no point flags an SRM.
    status, _, series = http.request(
        "GET", f"/api/v1/experiments/{experiment_id}/results/timeseries?metric=purchase&analysis=conversion"
    )
    assert status == 200, series
    last = series["points"][-1]
    assert [v["users"] for v in last["variants"]] == [v["users"] for v in results["variants"]]
    assert last["srm_p_value"] == results["srm"]["p_value"]
    assert not any(point["srm_flag"] for point in series["points"])
    for point_comparison, comparison in zip(
        last["comparisons"], results["metrics"]["purchase"]["conversion"]["comparisons"], strict=True
    ):
        assert point_comparison["lift"] == comparison["relative"]["estimate"]
        assert point_comparison["ci"] == comparison["relative"]["ci"]
        assert point_comparison["p_value"] == comparison["relative"]["p_value"]
    status, _, state = http.request("GET", f"/api/v1/experiments/{experiment_id}/bandit")
    assert status == 200, state
    assert state["open_period"] == PERIODS + 1
    assert [p["number"] for p in state["periods"]] == list(range(1, PERIODS + 1))
    assert state["weights"] == weights
    with urllib.request.urlopen(
        f"{http.base_url}/api/v1/experiments/{experiment_id}/report", timeout=60
    ) as page:
        html = page.read().decode()
    assert 'class="chart bandit-weights"' in html
    assert html.count('class="weight"') >= 3 * (PERIODS + 1)
