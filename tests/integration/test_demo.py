"""The demo experiment (`make demo`) holds only data dated inside its own dates."""

from __future__ import annotations

from typing import Any

from localdev.demo import DAYS, create_demo


def test_the_demo_data_lies_inside_the_experiment_dates(clean_db: str, sql: Any) -> None:
    # Its events used to begin a week before the experiment's start (started_at was the time of the call).
    experiment_id, created = create_demo()
    assert created
    ((started, completed),) = sql(
        "SELECT started_at, completed_at FROM experiments WHERE id = %s", (experiment_id,)
    )
    ((first, last),) = sql(
        "SELECT min(occurred_at), max(occurred_at) FROM"
        " (SELECT occurred_at FROM exposures UNION ALL SELECT occurred_at FROM conversions) AS e"
    )
    assert started <= first
    assert last <= completed
    assert (completed - started).days == DAYS - 1  # the report still shows every simulated day
    early = sql(
        "SELECT count(*) FROM assignments a JOIN exposures x USING (experiment_id, user_id)"
        " WHERE x.occurred_at < a.assigned_at OR a.assigned_at < %s",
        (started,),
    )
    assert early == [(0,)], "every user was enrolled when first seen, after the start"
