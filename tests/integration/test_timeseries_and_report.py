"""Results over time (daily snapshots, /results/timeseries) and the HTML report, through the handlers
against a real PostgreSQL."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.integration.test_events_and_metrics import rollup, start
from tests.integration.test_experiments_api import BASE
from tests.integration.test_results import populate

TODAY = datetime.now(UTC).date()


def rollup_all(sql: Any) -> dict[str, Any]:
    """Run the rollup until it folded every event. Another session's open transaction (any database
    of the server) holds the horizon back by design: wait a little for it, else skip."""
    for _ in range(30):
        summary = rollup()
        pending = sql(
            "SELECT (SELECT count(*) FROM exposures WHERE txid >= s.horizon)"
            " + (SELECT count(*) FROM conversions WHERE txid >= s.horizon) FROM rollup_state s"
        )[0][0]
        if pending == 0:
            return summary
        time.sleep(0.5)
    pytest.skip("another session's open transaction holds the rollup horizon back (by design)")


def at(day: date, hour: int = 12) -> str:
    """A timestamp on `day` (UTC), never in the future."""
    moment = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return min(moment, datetime.now(UTC) - timedelta(seconds=5)).isoformat()


def backdate(experiment_id: str, first: date) -> None:
    """As if the experiment had started at `first`'s midnight (UTC), and each of its users had been
    assigned then: the API dates both now, and no event may be dated before either."""
    started = datetime(first.year, first.month, first.day, tzinfo=UTC)
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "UPDATE experiments SET started_at = LEAST(started_at, %s) WHERE id = %s",
            (started, experiment_id),
        )
        conn.execute(
            "UPDATE assignments SET assigned_at = (SELECT started_at FROM experiments WHERE id = %(e)s)"
            " WHERE experiment_id = %(e)s",
            {"e": experiment_id},
        )


def simulate(api: Any, experiment_id: str, days: list[date], users_per_day: int = 12) -> None:
    """Each day, new users are enrolled and exposed; every third converts (purchase, value by user),
    and users of the first day buy again on every later day (so per-user totals grow across days)."""
    events: list[dict[str, Any]] = []
    for number, day in enumerate(days):
        for n in range(users_per_day):
            user = f"u{number}-{n}"
            api(
                "POST",
                "/api/v1/assignments",
                {"experiment_id": experiment_id, "user_id": user, "record_exposure": False},
            )
            events.append(
                {"type": "exposure", "experiment_id": experiment_id, "user_id": user, "event_id": f"x-{user}"}
                | {"timestamp": at(day, 9)}
            )
            if n % 3 == 0:
                events.append(conversion(experiment_id, user, day, float(n + 1), f"c-{user}"))
        if number > 0:
            for n in range(0, users_per_day, 3):
                events.append(conversion(experiment_id, f"u0-{n}", day, 2.0, f"again-{number}-{n}"))
    backdate(experiment_id, days[0])
    response = api("POST", "/api/v1/events", {"events": events})
    assert response.status == 200, response
    assert all(r["status"] == "accepted" for r in response.json["results"]), response.json


def conversion(experiment_id: str, user: str, day: date, value: float, event_id: str) -> dict[str, Any]:
    return {
        "type": "conversion",
        "experiment_id": experiment_id,
        "user_id": user,
        "metric_name": "purchase",
        "value": value,
        "event_id": event_id,
        "timestamp": at(day, 15),
    }


def series(api: Any, experiment_id: str, query: str = "") -> dict[str, Any]:
    response = api("GET", f"{BASE}/{experiment_id}/results/timeseries", query=query)
    assert response.status == 200, response
    body: dict[str, Any] = response.json
    return body


def assert_last_point_is_results(api: Any, experiment_id: str, analysis: str) -> None:
    body = series(api, experiment_id, f"metric=purchase&analysis={analysis}")
    results = api("GET", f"{BASE}/{experiment_id}/results").json
    last = body["points"][-1]
    assert [v["users"] for v in last["variants"]] == [v["users"] for v in results["variants"]]
    assert last["srm_p_value"] == results["srm"]["p_value"]
    for point_comparison, comparison in zip(
        last["comparisons"], results["metrics"]["purchase"][analysis]["comparisons"], strict=True
    ):
        assert point_comparison["lift"] == comparison["relative"]["estimate"]
        assert point_comparison["ci"] == comparison["relative"]["ci"]
        assert point_comparison["p_value"] == comparison["relative"]["p_value"]
        assert point_comparison["sequential_ci"] == comparison["sequential_relative"]["ci"]
        assert point_comparison["chance_to_win"] == comparison["bayes_relative"]["chance_to_win"]


def test_a_multi_day_run_gives_one_point_per_day_whose_last_is_results(api: Any, sql: Any) -> None:
    # Given five days of simulated traffic, not rolled up yet
    experiment = start(api)
    days = [TODAY - timedelta(days=k) for k in range(4, -1, -1)]
    simulate(api, experiment["id"], days)

    # Then the series has one point per day, with cumulative (monotone) users, ending in /results
    before = series(api, experiment["id"])
    assert [p["date"] for p in before["points"]] == [d.isoformat() for d in days]
    assert before["day_boundary"] == "UTC"
    totals = [sum(v["users"] for v in p["variants"]) for p in before["points"]]
    assert totals == [12, 24, 36, 48, 60]
    for kind in ("conversion", "value"):
        assert_last_point_is_results(api, experiment["id"], kind)

    # When the rollup runs, it records one snapshot per day, and the series does not change
    rollup_all(sql)
    assert sql(
        "SELECT day, sum(users)::int FROM snapshot_variants WHERE experiment_id = %s"
        " GROUP BY day ORDER BY day",
        (experiment["id"],),
    ) == list(zip(days, totals, strict=True))
    after = series(api, experiment["id"])
    # Except the sequential SRM p-value, which only a rollup's check computes (null before the first).
    checked = [p.pop("srm_sequential_p_value") for p in after["points"]]
    assert checked[-1] is not None
    assert [p.pop("srm_sequential_p_value") for p in before["points"]] == [None] * len(days)
    assert after["points"] == before["points"]
    for kind in ("conversion", "value"):
        assert_last_point_is_results(api, experiment["id"], kind)


def test_snapshots_hold_exact_per_user_sums_of_squares(api: Any, sql: Any) -> None:
    # Given one user buying 3 on day 1 and 4 on day 2 (and another user, so the experiment has two arms)
    experiment = start(api)
    day1, day2 = TODAY - timedelta(days=1), TODAY
    # both exposed on day 1 before they buy (only conversions at or after the first exposure count)
    for user in ("alice", "bob"):
        body = {"experiment_id": experiment["id"], "user_id": user, "record_exposure": False}
        api("POST", "/api/v1/assignments", body)
    backdate(experiment["id"], day1)
    exposures = [
        {"type": "exposure", "experiment_id": experiment["id"], "user_id": user, "event_id": f"x-{user}"}
        | {"timestamp": at(day1, 9)}
        for user in ("alice", "bob")
    ]
    api(
        "POST",
        "/api/v1/events",
        {
            "events": [
                *exposures,
                conversion(experiment["id"], "alice", day1, 3.0, "a1"),
                conversion(experiment["id"], "alice", day2, 4.0, "a2"),
            ]
        },
    )
    rollup_all(sql)
    # Then each day's sum of squares is of that day's cumulative per-user total: 3^2, then (3+4)^2
    # (one run folded both days: the user is recomputed from their events up to the end of each day)
    rows = sql(
        "SELECT day, sum, sum_squares, users FROM snapshot_metrics WHERE experiment_id = %s ORDER BY day",
        (experiment["id"],),
    )
    assert rows == [(day1, 3.0, 9.0, 1), (day2, 7.0, 49.0, 1)]


def test_snapshots_follow_attribution_from_the_first_exposure_and_a_late_exposure_counts_on_the_latest_day(
    api: Any, sql: Any
) -> None:
    # Given alice converting on day 1 and first exposed on day 2 (bob: exposed, so there are two arms)
    experiment = start(api)
    day1, day2 = TODAY - timedelta(days=2), TODAY - timedelta(days=1)
    for user in ("alice", "bob"):
        body = {"experiment_id": experiment["id"], "user_id": user, "record_exposure": False}
        api("POST", "/api/v1/assignments", body)
    backdate(experiment["id"], day1)

    def exposure(user: str, day: date, event_id: str) -> dict[str, Any]:
        return {"type": "exposure", "experiment_id": experiment["id"], "user_id": user} | {
            "event_id": event_id,
            "timestamp": at(day, 9),
        }

    events = [exposure("bob", day1, "b1"), conversion(experiment["id"], "alice", day1, 5.0, "a1")]
    api("POST", "/api/v1/events", {"events": [*events, exposure("alice", day2, "x2")]})
    rollup_all(sql)
    query = (
        "SELECT day, count, sum, users, unattributed FROM snapshot_metrics WHERE experiment_id = %s"
        " ORDER BY day"
    )
    # Then the conversion happened before her first exposure: it counts on neither day
    assert sql(query, (experiment["id"],)) == [(day1, 0, 0.0, 0, 1), (day2, 0, 0.0, 0, 1)]
    # When an exposure dated day 1 (before the conversion) arrives late, in a later run
    api("POST", "/api/v1/events", {"events": [exposure("alice", day1, "x1")]})
    before = series(api, experiment["id"])
    summary = rollup_all(sql)
    # Then it counts from the latest snapshot day on (earlier days are never rewritten), as the
    # series read before that run already said, and the last point is /results
    assert summary["snapshot_days"] == 1
    assert sql(query, (experiment["id"],)) == [(day1, 0, 0.0, 0, 1), (day2, 1, 5.0, 1, 0)]
    assert series(api, experiment["id"])["points"] == before["points"]
    assert_last_point_is_results(api, experiment["id"], "value")


def test_rollups_day_by_day_record_each_day_and_late_events_count_on_the_latest_day(
    api: Any, sql: Any
) -> None:
    experiment = start(api)
    days = [TODAY - timedelta(days=k) for k in (3, 2, 1)]
    simulate(api, experiment["id"], days[:2])
    rollup_all(sql)
    first = series(api, experiment["id"])["points"]
    simulate_day = days[2]
    api(
        "POST",
        "/api/v1/assignments",
        {"experiment_id": experiment["id"], "user_id": "late", "record_exposure": False},
    )
    backdate(experiment["id"], days[0])
    # A third day, and an exposure dated on the first day that arrives only now (late data)
    api(
        "POST",
        "/api/v1/events",
        {
            "events": [
                {"type": "exposure", "experiment_id": experiment["id"], "user_id": "late", "event_id": "late"}
                | {"timestamp": at(days[0])},
                conversion(experiment["id"], "u0-0", simulate_day, 5.0, "day3"),
            ]
        },
    )
    rollup_all(sql)
    points = series(api, experiment["id"])["points"]
    # Days before the latest recorded one are never rewritten: the late user counts from the latest
    # recorded day (the second) on.
    assert points[0] == first[0]
    assert [p["date"] for p in points] == [d.isoformat() for d in days]
    assert [sum(v["users"] for v in p["variants"]) for p in first] == [12, 24]
    assert [sum(v["users"] for v in p["variants"]) for p in points] == [12, 25, 25]
    assert_last_point_is_results(api, experiment["id"], "value")


def test_days_without_events_repeat_the_day_before(api: Any) -> None:
    experiment = start(api)
    simulate(api, experiment["id"], [TODAY - timedelta(days=3), TODAY])
    points = series(api, experiment["id"])["points"]
    assert len(points) == 4
    assert points[1]["variants"] == points[0]["variants"] == points[2]["variants"]
    assert points[1]["date"] == (TODAY - timedelta(days=2)).isoformat()


def test_timeseries_input_errors_name_the_field(api: Any) -> None:
    experiment = start(api)
    simulate(api, experiment["id"], [TODAY])
    unknown = api("GET", f"{BASE}/{experiment['id']}/results/timeseries", query="metric=nope")
    assert unknown.status == 404
    assert (unknown.json["error"], unknown.json["field"]) == ("metric_not_found", "metric")
    bad = api("GET", f"{BASE}/{experiment['id']}/results/timeseries", query="analysis=median")
    assert bad.status == 422
    assert bad.json["field"] == "analysis"
    missing = api("GET", f"{BASE}/00000000-0000-4000-8000-000000000000/results/timeseries")
    assert missing.status == 404
    assert missing.json["error"] == "experiment_not_found"


def test_an_experiment_without_events_has_an_empty_series_and_a_plain_report(api: Any) -> None:
    experiment = start(api)
    body = series(api, experiment["id"])
    assert (body["points"], body["metric"], body["metrics"]) == ([], None, [])
    page = api("GET", f"{BASE}/{experiment['id']}/report")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")


def report(api: Any, experiment_id: str, query: str = "") -> str:
    response = api("GET", f"{BASE}/{experiment_id}/report", query=query)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page: str = response.text
    return page


def test_the_report_shows_tables_charts_progress_and_warnings(api: Any, clean_db: str) -> None:
    # Given an experiment with a sample ratio mismatch (1000 against 700 users at 50/50)
    experiment = start(api)
    populate(clean_db, experiment, users=[1000, 700], converters=[100, 90], value=5.0)
    results = api("GET", f"{BASE}/{experiment['id']}/results", query="mde=0.1").json
    assert results["srm"]["flag"] is True

    page = report(api, experiment["id"], "mde=0.1")
    # Then: status, the SRM banner, a forest plot, the time series with its band, users by day, progress
    assert 'id="status">running<' in page
    assert 'data-warning="srm"' in page
    assert 'class="chart forest-plot"' in page
    assert 'class="band"' in page
    assert 'class="chart users-over-time"' in page
    required = results["metrics"]["purchase"]["conversion"]["power"]["required_total_users"]
    assert f"of {required:,} users" in page
    # And the numbers as text
    lift = results["metrics"]["purchase"]["conversion"]["comparisons"][0]["relative"]["estimate"]
    assert f"{abs(lift) * 100:.2f}%" in page
    assert "1,000" in page
    assert "700" in page
    # No script and nothing from another host
    assert "<script" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_the_report_warns_about_conversions_waiting_for_exposure(api: Any, sql: Any) -> None:
    experiment = start(api)
    simulate(api, experiment["id"], [TODAY])
    api(
        "POST",
        "/api/v1/assignments",
        {"experiment_id": experiment["id"], "user_id": "waiting", "record_exposure": False},
    )
    api("POST", "/api/v1/events", {"events": [conversion(experiment["id"], "waiting", TODAY, 1.0, "w1")]})
    page = report(api, experiment["id"])
    assert 'data-warning="waiting_for_exposure"' in page
    assert "1 conversions of 1 users wait for an exposure" in page
    assert 'data-warning="too_few_users"' in page
    rollup_all(sql)
    assert "1 conversions of 1 users wait for an exposure" in report(api, experiment["id"])


@pytest.mark.parametrize(
    ("query", "field"), [("mde=0", "mde"), ("mde=abc", "mde"), ("analysis=x", "analysis")]
)
def test_report_input_errors_are_json_naming_the_field(api: Any, query: str, field: str) -> None:
    experiment = start(api)
    response = api("GET", f"{BASE}/{experiment['id']}/report", query=query)
    assert response.status == 422
    assert response.json["field"] == field


def test_the_index_lists_experiments_with_their_headline(api: Any, clean_db: str) -> None:
    experiment = start(api)
    populate(clean_db, experiment, users=[500, 500], converters=[50, 80], value=1.0)
    draft = api(
        "POST",
        BASE,
        {"name": "draft-one", "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]},
    )
    response = api("GET", "/api/v1/report")
    assert response.status == 200
    page = response.text
    assert f'href="experiments/{experiment["id"]}/report"' in page
    assert f'href="experiments/{draft.json["id"]}/report"' in page
    assert "+60.00%" in page  # 80 against 50 converters of 500
    assert page.index("draft-one") < page.index(experiment["name"])  # newest first


def test_the_index_headline_of_a_treatment_that_kills_conversion_shows_its_counts(
    api: Any, clean_db: str
) -> None:
    experiment = start(api)
    populate(clean_db, experiment, users=[124, 134], converters=[3, 0], value=1.0)
    page = api("GET", "/api/v1/report").text
    assert "no conversions yet" not in page
    assert "no test: a variant converted none or all of its users" in page
    assert "3/124 (2.42%)" in page
    assert "0/134 (0.00%)" in page


def test_the_report_needs_the_read_scope(api: Any) -> None:
    experiment = start(api)
    refused = api("GET", f"{BASE}/{experiment['id']}/report", scopes=("abtest/ingest",))
    assert refused.status == 403
    assert refused.json["scope"] == "read"
