"""Breakdowns and strata over real HTTP through the local server: a user's slice is their value at
first exposure, /results?dimension= has one entry per value (at most 20 plus "(other)") whose figures
equal a by-hand count, and 50-way bursts of new users in three strata stay within one block."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from abtest.contract.blocks import block_slots, stratified_variant
from abtest.stats import srm_check
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body

BASE = "/api/v1/experiments"


def ok(http: Http, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    got, _, payload = http.request(method, path, body)
    assert got == status, payload
    return payload


def started(http: Http, **overrides: Any) -> dict[str, Any]:
    body = experiment_body(traffic_allocation=1.0, **overrides)
    experiment: dict[str, Any] = ok(http, "POST", BASE, body, 201)
    ok(http, "PUT", f"{BASE}/{experiment['id']}/status", {"status": "running"})
    return experiment


def test_fr_then_us_stays_fr_and_slices_equal_a_by_hand_count(http: Http) -> None:
    experiment = started(http, surface="recommendations", dimensions=["country"])
    eid = experiment["id"]
    served: dict[str, tuple[str, str]] = {}
    countries = [f"k{i:02d}" for i in range(23)] + ["FR"] * 10
    for n in range(240):
        country = countries[n % len(countries)]
        body = ok(
            http,
            "POST",
            "/api/v1/recommendations",
            {"user_id": f"e2e-{n}", "limit": 1, "attributes": {"country": country}},
        )
        served[f"e2e-{n}"] = (country, body["experiment_variant"].split(":")[1])
        if n % 3 == 0:
            ok(
                http,
                "POST",
                f"{BASE}/conversions",
                {"experiment_id": eid, "user_id": f"e2e-{n}", "metric_name": "buy"},
                201,
            )
    # The FR users come back from the US, on both routes: their slice does not move.
    for user in [u for u, (c, _) in served.items() if c == "FR"][:5]:
        ok(
            http,
            "POST",
            "/api/v1/assignments",
            {"experiment_id": eid, "user_id": user, "attributes": {"country": "US"}},
        )
        ok(
            http,
            "POST",
            "/api/v1/recommendations",
            {"user_id": user, "limit": 1, "attributes": {"country": "US"}},
        )

    results = ok(http, "GET", f"{BASE}/{eid}/results?dimension={quote('country')}")
    slices = results["breakdown"]["slices"]
    values = [s["value"] for s in slices]
    assert len(values) == 21
    assert values[-1] == "(other)"
    assert len(set(values)) == 21
    assert values[0] == "FR"
    assert "US" not in values
    shown = set(values[:-1])
    converted = {f"e2e-{n}" for n in range(240) if n % 3 == 0}
    for piece in slices:
        for variant in piece["variants"]:
            members = [
                u
                for u, (c, v) in served.items()
                if v == variant["name"]
                and (c == piece["value"] or (piece["value"] == "(other)" and c not in shown))
            ]
            assert variant["users"] == len(members)
            assert variant["metrics"]["buy"]["converted"] == len([u for u in members if u in converted])
    fr = slices[0]
    arms = {v["name"]: v for v in fr["variants"]}
    rate = {name: arm["metrics"]["buy"]["converted"] / arm["users"] for name, arm in arms.items()}
    estimate = fr["metrics"]["buy"]["conversion"][0]["absolute"]["estimate"]
    assert estimate == pytest.approx(rate["treatment"] - rate["control"])


def test_fifty_way_bursts_in_three_strata(http: Http) -> None:
    experiment = started(
        http,
        surface="strata_e2e",
        variants=[{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}],
        assignment={"type": "stratified", "stratum": "tier"},
    )
    eid, salt = experiment["id"], experiment["salt"]
    slots = block_slots([0.5, 0.5], 2)
    answers: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max_workers=50) as pool:
        for tier in ("gold", "silver", "bronze"):
            barrier = threading.Barrier(50)

            def one(n: int, tier: str = tier, barrier: Any = barrier) -> str:
                barrier.wait()
                body = ok(
                    http,
                    "POST",
                    "/api/v1/assignments",
                    {"experiment_id": eid, "user_id": f"{tier}-{n}", "attributes": {"tier": tier}},
                )
                name: str = body["variant"]["name"]
                return name

            answers[tier] = list(pool.map(one, range(50)))
    for tier, names in answers.items():
        expected = Counter(["a", "b"][stratified_variant(salt, tier, k, slots)] for k in range(50))
        assert Counter(names) == expected == Counter({"a": 25, "b": 25})
        assert srm_check([expected["a"], expected["b"]], [0.5, 0.5]).flag is False
    results = ok(http, "GET", f"{BASE}/{eid}/results?dimension=tier")
    assert sorted(s["value"] for s in results["breakdown"]["slices"]) == ["bronze", "gold", "silver"]
    assert [v["users"] for v in results["variants"]] == [75, 75]
    assert results["post_stratified"]["stratum"] == "tier"
