"""The event-time rule (abtest.domain.event_times) as a scenario table; the integration test
tests/integration/test_event_times.py runs the same table against its SQL form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest

from abtest.domain.event_times import ASSIGNMENT_CLOCK_LAG, EventKind, EventTimeError, event_time

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
ASSIGNED = START + timedelta(days=2)
SECOND = timedelta(seconds=1)


class Scenario(NamedTuple):
    name: str
    kind: EventKind
    occurred_at: datetime
    started_at: datetime | None
    assigned_at: datetime | None
    stored_at: datetime | None  # None: refused
    error: EventTimeError | None


SCENARIOS = [
    Scenario(
        "exposure after the assignment",
        "exposure",
        ASSIGNED + SECOND,
        START,
        ASSIGNED,
        ASSIGNED + SECOND,
        None,
    ),
    Scenario("exposure at the assignment", "exposure", ASSIGNED, START, ASSIGNED, ASSIGNED, None),
    Scenario(
        "exposure a second early: moved", "exposure", ASSIGNED - SECOND, START, ASSIGNED, ASSIGNED, None
    ),
    Scenario(
        "exposure exactly the lag early: moved",
        "exposure",
        ASSIGNED - ASSIGNMENT_CLOCK_LAG,
        START,
        ASSIGNED,
        ASSIGNED,
        None,
    ),
    Scenario(
        "exposure beyond the lag: refused",
        "exposure",
        ASSIGNED - ASSIGNMENT_CLOCK_LAG - SECOND,
        START,
        ASSIGNED,
        None,
        EventTimeError.BEFORE_ASSIGNMENT,
    ),
    Scenario(
        "exposure before the start: refused",
        "exposure",
        START - SECOND,
        START,
        START + SECOND,
        None,
        EventTimeError.BEFORE_START,
    ),
    Scenario(
        "exposure in the year 2000: refused",
        "exposure",
        datetime(2000, 1, 2, tzinfo=UTC),
        START,
        ASSIGNED,
        None,
        EventTimeError.BEFORE_START,
    ),
    Scenario("exposure of a user without assignment", "exposure", START, START, None, START, None),
    Scenario("exposure, experiment never started", "exposure", START, None, None, START, None),
    Scenario("conversion at the start", "conversion", START, START, ASSIGNED, START, None),
    Scenario(
        "conversion before the assignment: kept as it is",
        "conversion",
        ASSIGNED - timedelta(days=1),
        START,
        ASSIGNED,
        ASSIGNED - timedelta(days=1),
        None,
    ),
    Scenario(
        "conversion before the start: refused",
        "conversion",
        START - SECOND,
        START,
        ASSIGNED,
        None,
        EventTimeError.BEFORE_START,
    ),
    Scenario(
        "conversion of 2000-01-03: refused",
        "conversion",
        datetime(2000, 1, 3, tzinfo=UTC),
        START,
        None,
        None,
        EventTimeError.BEFORE_START,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_rule(scenario: Scenario) -> None:
    decided = event_time(
        scenario.kind,
        scenario.occurred_at,
        started_at=scenario.started_at,
        assigned_at=scenario.assigned_at,
    )
    assert (decided.occurred_at, decided.error) == (scenario.stored_at, scenario.error)
    assert decided.accepted == (scenario.error is None)


def test_the_lag_is_five_minutes() -> None:
    assert timedelta(minutes=5) == ASSIGNMENT_CLOCK_LAG
