"""Breakdowns and stratified assignment against PostgreSQL: values captured at enrollment and never
changed, the distinct-value cap, permuted blocks per stratum under 50-way concurrency, /results by
dimension equal to a by-hand analysis, post-stratified estimates."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from abtest.contract.blocks import block_size, block_slots, stratified_variant
from abtest.limits import MAX_DIMENSION_VALUES
from abtest.stats import srm_check
from tests.integration.test_events_and_metrics import BASE, convert, rollup
from tests.integration.test_experiments_api import experiment_body

THREE_WAY = [
    {"name": "control", "weight": 0.5, "config": {}},
    {"name": "b", "weight": 0.25, "config": {}},
    {"name": "c", "weight": 0.25, "config": {}},
]


def start(api: Any, **overrides: Any) -> dict[str, Any]:
    body = experiment_body(traffic_allocation=1.0, surface="checkout", **overrides)
    response = api("POST", BASE, body)
    assert response.status == 201, response
    started: dict[str, Any] = api("PUT", f"{BASE}/{response.json['id']}/status", {"status": "running"}).json
    return started


def assign(api: Any, experiment_id: str, user: str, attributes: dict[str, Any]) -> dict[str, Any]:
    response = api(
        "POST",
        "/api/v1/assignments",
        {"experiment_id": experiment_id, "user_id": user, "attributes": attributes},
    )
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def captured(sql: Any, experiment_id: str, user: str) -> dict[str, str]:
    rows = sql(
        "SELECT dimensions FROM assignments WHERE experiment_id = %s AND user_id = %s", (experiment_id, user)
    )
    value: dict[str, str] = rows[0][0]
    return value


def test_values_are_captured_at_enrollment_and_never_change(api: Any, sql: Any) -> None:
    experiment = start(api, dimensions=["country", "device.type", "app.version"])
    assign(
        api, experiment["id"], "alice", {"country": "FR", "device": {"type": "ios"}, "app": {"version": 7}}
    )
    assign(api, experiment["id"], "alice", {"country": "US", "device": {"type": "android"}})

    assert captured(sql, experiment["id"], "alice") == {
        "country": "FR",
        "device.type": "ios",
        "app.version": "7",
    }
    assign(api, experiment["id"], "bob", {"country": "x" * 500})
    assert captured(sql, experiment["id"], "bob") == {
        "country": "x" * 64,
        "device.type": "(none)",
        "app.version": "(none)",
    }


def test_dimensions_are_validated_and_frozen_once_running(api: Any) -> None:
    too_many = api("POST", BASE, experiment_body(dimensions=["a", "b", "c", "d", "e", "f"]))
    assert too_many.status == 422
    assert too_many.json["field"].startswith("dimensions")
    experiment = start(api, dimensions=["country"])
    frozen = api("PATCH", f"{BASE}/{experiment['id']}", {"dimensions": ["device"]})
    assert frozen.status == 409
    assert frozen.json["error"] == "field_frozen"


def test_new_values_past_the_cap_become_other(api: Any, sql: Any) -> None:
    experiment = start(api, dimensions=["city"])
    sql(
        "WITH filled AS (INSERT INTO dimension_values (experiment_id, dimension, value)"
        " SELECT %s, 'city', 'c' || g FROM generate_series(1, %s) g RETURNING 1) SELECT count(*) FROM filled",
        (experiment["id"], MAX_DIMENSION_VALUES),
    )
    assign(api, experiment["id"], "known", {"city": "c5"})
    assign(api, experiment["id"], "new", {"city": "somewhere-new"})
    assert captured(sql, experiment["id"], "known") == {"city": "c5"}
    assert captured(sql, experiment["id"], "new") == {"city": "(other)"}


def test_stratified_design_is_checked(api: Any) -> None:
    sevenths = [{"name": f"v{i}", "weight": w, "config": {}} for i, w in enumerate([3 / 7, 4 / 7])]
    refused = api(
        "POST",
        BASE,
        experiment_body(
            surface="checkout",
            variants=[
                {"name": "a", "weight": 0.52, "config": {}},
                {"name": "b", "weight": 0.48, "config": {}},
            ],
            assignment={"type": "stratified", "stratum": "country"},
        ),
    )
    assert refused.status == 422
    assert (refused.json["error"], refused.json["field"]) == ("block_too_large", "assignment")
    ok = api(
        "POST",
        BASE,
        experiment_body(
            name="sevenths",
            surface="checkout",
            variants=sevenths,
            assignment={"type": "stratified", "stratum": "country"},
        ),
    )
    assert ok.status == 201, ok
    assert ok.json["dimensions"] == ["country"]  # the stratum is always captured


def test_a_stratified_bandit_is_refused(api: Any, sql: Any) -> None:
    body = experiment_body(
        surface="checkout",
        assignment={"type": "stratified", "stratum": "country"},
        allocation={"type": "bandit", "metric": "m", "analysis": "value", "period_hours": 1},
    )
    refused = api("POST", BASE, body)
    assert (refused.status, refused.json["error"], refused.json["field"]) == (
        422,
        "stratified_bandit",
        "assignment",
    )
    assert sql("SELECT count(*) FROM experiments") == [(0,)]


def test_fifty_way_bursts_in_three_strata_stay_within_one_block(api: Any, sql: Any) -> None:
    experiment = start(api, variants=THREE_WAY, assignment={"type": "stratified", "stratum": "country"})
    weights = [v["weight"] for v in THREE_WAY]
    size = block_size(weights, 20)
    assert size == 4
    slots = block_slots(weights, size)
    names = [v["name"] for v in THREE_WAY]
    burst = 50
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=burst) as pool:
        for country in ("FR", "US", "DE"):
            for round_ in range(2):
                barrier = threading.Barrier(burst)

                def one(n: int, country: str = country, round_: int = round_, barrier: Any = barrier) -> str:
                    barrier.wait()
                    body = assign(api, experiment["id"], f"{country}-{round_}-{n}", {"country": country})
                    assert body["new_assignment"] is True
                    name: str = body["variant"]["name"]
                    return name

                futures = [pool.submit(one, n) for n in range(burst)]
                for future in futures:
                    if future.exception() is not None:
                        errors.append(future.exception())  # type: ignore[arg-type]
                # After each burst: the stratum holds exactly the contract's first n positions.
                enrolled = (round_ + 1) * burst
                stored = Counter(
                    dict(
                        sql(
                            "SELECT v.name, count(*) FROM assignments a"
                            " JOIN variants v ON v.id = a.variant_id WHERE a.experiment_id = %s"
                            " AND a.dimensions ->> 'country' = %s GROUP BY v.name",
                            (experiment["id"], country),
                        )
                    )
                )
                expected = Counter(
                    names[stratified_variant(experiment["salt"], country, k, slots)] for k in range(enrolled)
                )
                assert stored == expected
                counter = sql(
                    "SELECT next FROM stratum_counters WHERE experiment_id = %s AND stratum = %s",
                    (experiment["id"], country),
                )
                assert counter == [(enrolled,)]
    assert errors == []
    # Every step of the sequence (every moment) is within one block of the target shares.
    for country in ("FR", "US", "DE"):
        counts = [0, 0, 0]
        for k in range(2 * burst):
            counts[stratified_variant(experiment["salt"], country, k, slots)] += 1
            for i, w in enumerate(weights):
                assert abs(counts[i] - w * (k + 1)) < size
        assert srm_check(counts, weights).flag is False
    assert sql("SELECT count(*), count(DISTINCT user_id) FROM assignments") == [(300, 300)]
    assert sql("SELECT count(*) FROM exposures") == [(300,)]


def test_results_by_dimension_equal_a_by_hand_analysis(api: Any, sql: Any) -> None:
    experiment = start(api, dimensions=["country"])
    countries = [f"c{i:02d}" for i in range(25)]
    users: dict[str, tuple[str, str]] = {}
    for n in range(400):
        country = countries[n % 25] if n % 3 else countries[n % 4]  # a few large values, many small
        user = f"u{n}"
        body = assign(api, experiment["id"], user, {"country": country})
        users[user] = (country, body["variant"]["name"])
        if n % 4 == 0:
            assert convert(api, experiment["id"], user, value=float(n % 7)).status == 201
    assign(api, experiment["id"], "u1", {"country": "moved"})  # never moves a slice
    rolled = rollup()["users"] > 0  # 0: another session's open transaction holds the horizon back
    late = assign(api, experiment["id"], "late", {"country": "c00"})  # above the horizon: the tail
    users["late"] = ("c00", late["variant"]["name"])

    response = api("GET", f"{BASE}/{experiment['id']}/results", query="dimension=country")
    assert response.status == 200, response
    breakdown = response.json["breakdown"]
    values = [piece["value"] for piece in breakdown["slices"]]
    assert len(values) == 21
    assert values[-1] == "(other)"
    assert len(set(values)) == 21
    assert "moved" not in values
    shown = set(values[:-1])
    converted = {u for n, u in enumerate(f"u{n}" for n in range(400)) if n % 4 == 0}
    for piece in breakdown["slices"]:
        members = [
            (u, v)
            for u, (c, v) in users.items()
            if (c in shown and c == piece["value"]) or (piece["value"] == "(other)" and c not in shown)
        ]
        by_variant = {v["name"]: v for v in piece["variants"]}
        for name in ("control", "treatment"):
            arm = [u for u, v in members if v == name]
            assert by_variant[name]["users"] == len(arm)
            assert by_variant[name]["metrics"]["purchase"]["converted"] == len(
                [u for u in arm if u in converted]
            )
            total = sum(float(int(u[1:]) % 7) for u in arm if u in converted)
            assert by_variant[name]["metrics"]["purchase"]["total"] == pytest.approx(total)
        n_c, n_t = by_variant["control"]["users"], by_variant["treatment"]["users"]
        if n_c and n_t:
            p_c = by_variant["control"]["metrics"]["purchase"]["converted"] / n_c
            p_t = by_variant["treatment"]["metrics"]["purchase"]["converted"] / n_t
            absolute = piece["metrics"]["purchase"]["conversion"][0]["absolute"]
            if absolute["estimate"] is not None:
                assert absolute["estimate"] == pytest.approx(p_t - p_c)
    assert sum(piece["users"] for piece in breakdown["slices"]) == sum(
        v["users"] for v in response.json["variants"]
    )
    assert breakdown["correction"] == "holm"

    # The scheduled rollup keeps every dimension's slices adding up to the experiment's totals.
    per_variant = sql(
        "SELECT variant_id, users FROM rollup_variants WHERE experiment_id = %s ORDER BY 1",
        (experiment["id"],),
    )
    per_slice = sql(
        "SELECT variant_id, sum(users)::bigint FROM rollup_slice_variants WHERE experiment_id = %s"
        " AND dimension = 'country' GROUP BY 1 ORDER BY 1",
        (experiment["id"],),
    )
    assert per_slice == per_variant
    assert (len(per_variant) == 2) is rolled
    # One slice over time: its last day is the slice now.
    c00 = next(piece for piece in breakdown["slices"] if piece["value"] == "c00")
    series = api(
        "GET",
        f"{BASE}/{experiment['id']}/results/timeseries",
        query="dimension=country&value=c00&metric=purchase",
    )
    assert series.status == 200, series
    last = series.json["points"][-1]
    assert [v["users"] for v in last["variants"]] == [v["users"] for v in c00["variants"]]
    assert [v["converted"] for v in last["variants"]] == [
        v["metrics"]["purchase"]["converted"] for v in c00["variants"]
    ]
    lonely = api("GET", f"{BASE}/{experiment['id']}/results/timeseries", query="dimension=country")
    assert (lonely.status, lonely.json["field"]) == (422, "value")

    page = api("GET", f"{BASE}/{experiment['id']}/report", query="dimension=country")
    assert page.status == 200
    html = page.text
    assert 'id="breakdown"' in html
    assert html.count('<tr data-value="') == 21
    assert 'data-value="(other)"' in html

    narrowed = api("GET", f"{BASE}/{experiment['id']}/results", query="dimension=country&metric=purchase")
    assert narrowed.status == 200
    unknown = api("GET", f"{BASE}/{experiment['id']}/results", query="dimension=device")
    assert (unknown.status, unknown.json["error"], unknown.json["field"]) == (
        422,
        "unknown_dimension",
        "dimension",
    )
    assert len(json.dumps(response.json)) < 2_000_000


def test_stratified_results_carry_post_stratified_estimates(api: Any) -> None:
    experiment = start(api, assignment={"type": "stratified", "stratum": "tier"})
    for n in range(120):
        tier = ("gold", "silver", "bronze")[n % 3]
        assign(api, experiment["id"], f"s{n}", {"tier": tier})
        if n % (2 + n % 3) == 0:
            convert(api, experiment["id"], f"s{n}", value=1.0)
    body = api("GET", f"{BASE}/{experiment['id']}/results").json
    post = body["post_stratified"]
    assert post["stratum"] == "tier"
    assert post["strata"] == 3
    block = post["metrics"]["purchase"]["conversion"][0]["relative"]
    assert block["error"] is None
    assert block["ci"][0] < block["estimate"] < block["ci"][1]


def test_the_database_block_order_matches_the_golden_vectors(sql: Any) -> None:
    from pathlib import Path

    vectors = json.loads((Path(__file__).parents[1] / "golden" / "block_vectors.json").read_text("utf-8"))
    for case in vectors["cases"]:
        size = case["size"]
        for block, order in enumerate(case["orders"]):
            got = sql(
                "SELECT array_agg(abtest_block_slot(%s, %s, %s, p, %s) ORDER BY p)"
                " FROM generate_series(0, %s - 1) p",
                (case["salt"], case["stratum"], block, size, size),
            )
            assert got == [(order,)], (case["salt"], case["stratum"], block)


def test_openfeature_contexts_are_captured_single_and_bulk(api: Any, sql: Any) -> None:
    from tests.integration.test_ofrep import FLAGS, evaluate, post

    single = start(api, dimensions=["country"])
    assert evaluate("checkout", {"targetingKey": "of-1", "country": "FR"}).status == 200
    evaluate("checkout", {"targetingKey": "of-1", "country": "US"})
    assert captured(sql, single["id"], "of-1") == {"country": "FR"}
    other = api(
        "POST",
        BASE,
        experiment_body(name="bulk_one", surface="search", traffic_allocation=1.0, dimensions=["plan"]),
    ).json
    api("PUT", f"{BASE}/{other['id']}/status", {"status": "running"})
    assert post(FLAGS, '{"context": {"targetingKey": "of-2", "plan": "pro", "country": "DE"}}').status == 200
    assert captured(sql, other["id"], "of-2") == {"plan": "pro"}
    assert captured(sql, single["id"], "of-2") == {"country": "DE"}


def test_batch_exposures_dated_earlier_never_change_the_captured_values(api: Any, sql: Any) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    experiment = start(api, dimensions=["country"])
    time.sleep(1.5)  # so that an exposure dated before the assignment is still after the start
    assign(api, experiment["id"], "b-1", {"country": "FR"})
    earlier = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    event = {
        "type": "exposure",
        "experiment_id": experiment["id"],
        "user_id": "b-1",
        "event_id": "early-1",
        "timestamp": earlier,
    }
    batch = api("POST", "/api/v1/events", {"events": [event]})
    assert batch.json["results"][0]["status"] == "accepted", batch
    assign(api, experiment["id"], "b-1", {"country": "US"})
    assert captured(sql, experiment["id"], "b-1") == {"country": "FR"}
    assert sql("SELECT count(*) FROM exposures WHERE user_id = 'b-1'") == [(3,)]
