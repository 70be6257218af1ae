"""Alerts' pure rules: the rollup's sequential SRM monitor (periods, monotone, zero-weight variants),
transitions (once per change), the decision and guardrail hooks, retry backoff, digest slots, and the
local sealing of webhook secrets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from abtest.analysis.srm_monitor import SrmPeriod, apply_periods, check, sequential_by_day
from abtest.delivery.secret_box import LocalSecretBox, SecretBoxError
from abtest.domain.alerts import (
    AlertKind,
    Condition,
    DigestSchedule,
    StoredCondition,
    backoff_seconds,
    decision_of,
    guardrail_breaches,
    message_body,
    transitions,
)
from abtest.domain.digests import latest_slot
from abtest.stats.sequential_srm import SequentialSrm, sequential_srm_p_values

NOW = datetime(2026, 12, 9, 15, 30, tzinfo=UTC)  # a Wednesday
A, B, C = uuid4(), uuid4(), uuid4()


def test_each_rollup_check_adds_the_new_users_since_the_last_one() -> None:
    totals = [[100, 95], [260, 240], [400, 390]]
    monitor = None
    for users in totals:
        monitor = check(
            monitor,
            variant_ids=[A, B],
            weights=[0.5, 0.5],
            users=users,
            exposures=sum(users),
            chi2_p=None,
            now=NOW,
        )
    assert monitor is not None
    increments = [[100, 95], [160, 145], [140, 150]]
    assert monitor.sequential_p == sequential_srm_p_values(increments, [0.5, 0.5])[-1]
    assert monitor.srm is not None
    assert monitor.srm.checks == 3
    # A check without new users adds no check and keeps the p-value.
    again = check(
        monitor,
        variant_ids=[A, B],
        weights=[0.5, 0.5],
        users=[400, 390],
        exposures=790,
        chi2_p=None,
        now=NOW + timedelta(hours=1),
    )
    assert (again.sequential_p, again.srm.checks if again.srm else None) == (monitor.sequential_p, 3)
    assert again.last_exposure_at == NOW  # exposures did not grow


def test_the_p_value_never_rises() -> None:
    rng = random.Random(7)
    monitor, seen = None, [0, 0]
    previous = 1.0
    for _ in range(40):
        seen = [seen[0] + rng.randint(0, 60), seen[1] + rng.randint(0, 50)]
        monitor = check(
            monitor,
            variant_ids=[A, B],
            weights=[0.5, 0.5],
            users=list(seen),
            exposures=sum(seen),
            chi2_p=None,
            now=NOW,
        )
        p = monitor.sequential_p
        assert p is not None
        assert p <= previous
        previous = p


def test_a_zero_weight_variant_is_left_out_of_the_test() -> None:
    monitor = check(
        None,
        variant_ids=[A, B, C],
        weights=[0.5, 0.0, 0.5],
        users=[500, 0, 520],
        exposures=1020,
        chi2_p=None,
        now=NOW,
    )
    assert monitor.variant_ids == (A, C)
    assert monitor.sequential_p == sequential_srm_p_values([[500, 520]], [0.5, 0.5])[-1]


def test_bandit_periods_multiply_their_bayes_factors() -> None:
    periods = [
        SrmPeriod((0.5, 0.5), (500, 520)),
        SrmPeriod((0.5, 0.5), (480, 490)),
        SrmPeriod((0.7, 0.3), (700, 310)),
        SrmPeriod((0.7, 0.3), (0, 0)),  # nothing new: no check
        SrmPeriod((0.2, 0.8), (210, 790)),
    ]
    state = apply_periods(None, periods)
    expected = (
        SequentialSrm.start([0.5, 0.5])
        .add([500, 520])
        .add([480, 490])
        .reweight([0.7, 0.3])
        .add([700, 310])
        .reweight([0.2, 0.8])
        .add([210, 790])
    )
    assert state == expected
    assert state is not None
    assert state.periods == 3
    # As the rollup takes them: the periods of one check replace the default single period.
    monitor = check(
        None,
        variant_ids=[A, B],
        weights=[0.2, 0.8],
        users=[1890, 2110],
        exposures=4000,
        chi2_p=None,
        now=NOW,
        periods=periods,
    )
    assert monitor.srm == expected
    assert monitor.seen_users == (1890, 2110)


def test_a_condition_fires_once_per_transition() -> None:
    srm = Condition(AlertKind.SRM_DETECTED, "", True, {"p": 1e-5})
    assert [a.kind for a in transitions(A, [srm], {})] == [AlertKind.SRM_DETECTED]
    held = {("srm_detected", ""): StoredCondition(True)}
    assert transitions(A, [srm], held) == []
    assert transitions(A, [Condition(AlertKind.SRM_DETECTED, "", False, {})], held) == []
    gone = {("srm_detected", ""): StoredCondition(False)}
    assert len(transitions(A, [srm], gone)) == 1


def test_a_decision_fires_when_it_changes() -> None:
    ship = {"action": "ship", "variant": "b"}
    decision = Condition(AlertKind.DECISION_CHANGED, "", True, {"decision": ship}, value=ship)
    (first,) = transitions(A, [decision], {})
    assert first.evidence == {"decision": ship, "previous": None}
    assert transitions(A, [decision], {("decision_changed", ""): StoredCondition(True, ship)}) == []
    before = {"action": "keep_running"}
    (changed,) = transitions(A, [decision], {("decision_changed", ""): StoredCondition(True, before)})
    assert changed.evidence["previous"] == before


class _Outcome(BaseModel):
    metric: str
    breached: bool


class _Results:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def test_the_decision_and_guardrail_hooks_read_what_the_results_carry() -> None:
    assert decision_of(_Results()) is None
    assert decision_of(_Results(decision={"action": "ship", "computed_at": "x"})) == {"action": "ship"}
    assert guardrail_breaches(_Results()) == []
    outcomes = [_Outcome(metric="latency", breached=True), _Outcome(metric="errors", breached=False)]
    assert guardrail_breaches(_Results(guardrails=outcomes)) == [{"metric": "latency", "breached": True}]
    by_metric = {"latency": {"breached": True, "lift": 0.2}}
    assert guardrail_breaches(_Results(guardrails=by_metric)) == [
        {"metric": "latency", "breached": True, "lift": 0.2}
    ]


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 30), (2, 60), (3, 120), (8, 3600), (20, 3600)]:
        delays = [backoff_seconds(attempt, base=30, cap=3600, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not a fixed delay


@pytest.mark.parametrize(
    ("every", "hour", "expected"),
    [
        ("day", 6, datetime(2026, 12, 9, 6, tzinfo=UTC)),
        ("day", 18, datetime(2026, 12, 8, 18, tzinfo=UTC)),
        ("week", 6, datetime(2026, 12, 7, 6, tzinfo=UTC)),  # Monday
        ("week", 18, datetime(2026, 12, 7, 18, tzinfo=UTC)),
    ],
)
def test_digest_slots(every: str, hour: int, expected: datetime) -> None:
    assert latest_slot(DigestSchedule.model_validate({"every": every, "hour_utc": hour}), NOW) == expected
    monday_early = datetime(2026, 12, 7, 1, tzinfo=UTC)
    weekly = latest_slot(DigestSchedule(every="week", hour_utc=6), monday_early)
    assert weekly == datetime(2026, 11, 30, 6, tzinfo=UTC)


def test_local_sealing_round_trips_and_refuses_tampering() -> None:
    box = LocalSecretBox(bytes(range(32)))
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sealed = box.seal(secret)
    assert secret.encode() not in sealed
    assert box.seal(secret) != sealed  # a fresh nonce each time
    assert box.open(sealed) == secret
    flipped = bytearray(sealed)
    flipped[20] ^= 1
    with pytest.raises(SecretBoxError):
        box.open(bytes(flipped))
    with pytest.raises(SecretBoxError):
        LocalSecretBox(bytes(32)).open(sealed)


def test_the_body_is_standard_webhooks_shaped() -> None:
    body = message_body("srm_detected", NOW, {"id": "x"})
    assert body == {"type": "srm_detected", "timestamp": "2026-12-09T15:30:00Z", "data": {"id": "x"}}


def test_the_series_takes_the_last_check_on_or_before_each_day() -> None:
    days = {NOW.date() - timedelta(days=2): 0.5, NOW.date(): 0.01}
    assert sequential_by_day(days, NOW.date() - timedelta(days=3)) is None
    assert sequential_by_day(days, NOW.date() - timedelta(days=1)) == 0.5
    assert sequential_by_day(days, NOW.date()) == 0.01
