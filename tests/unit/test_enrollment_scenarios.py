"""The enrollment scenario table (tests/scenarios/enrollment.py) against FakeStore, the in-memory
mirror of the enrollment statement; tests/integration/test_enrollment_scenarios.py runs the same
table against the statement itself, so the fake cannot drift from it unnoticed."""

from __future__ import annotations

import re

import pytest

from abtest.domain.assignment import Enrollment, EnrollRequest, Reason
from abtest.domain.decision import STAGES
from abtest.storage.assignments import ENROLL
from tests.scenarios.enrollment import SCENARIOS, USER, Rows, Scenario
from tests.scenarios.enrollment_runner import PROFILE, World, play
from tests.unit.fakes import FakeStore


class FakeScenarioStore:
    """FakeStore seeded with a scenario's rows (one request at a time: it cannot race)."""

    can_race = False

    def __init__(self) -> None:
        self.store = FakeStore()

    def seed(self, world: World) -> None:
        given, store = world.given, self.store
        store.experiments.extend(world.experiments.values())
        for variant in given.assignments:
            store.assignments[(world.id_of(variant.split(".")[0]), USER)] = world.id_of(variant)
        for key in given.members:
            store.members[(world.experiments[key].surface, USER)] = world.id_of(key)
        for variant in given.overrides:  # oldest first: the fake's order is the insertion order
            store.overrides[(world.id_of(variant.split(".")[0]), USER)] = world.id_of(variant)
        store.holdouts.extend(world.holdouts.values())
        for key, group in given.holdout_members:
            store.holdout_members[(world.id_of(key), USER)] = group
        if given.profile:
            store.profiles[USER] = list(PROFILE)

    def enroll(self, request: EnrollRequest) -> Enrollment:
        return self.store.enroll(request)

    def race(self, first: EnrollRequest, second: EnrollRequest) -> tuple[Enrollment, Enrollment]:
        raise NotImplementedError("the fake runs one request at a time")

    def rows(self, world: World) -> Rows:
        store = self.store
        return Rows(
            frozenset(world.names[v] for (_, user), v in store.assignments.items() if user == USER),
            frozenset(world.names[e] for (_, user), e in store.members.items() if user == USER),
            store.exposures,
            store.forced_exposures,
            frozenset((world.names[h], g) for (h, user), g in store.holdout_members.items() if user == USER),
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_the_fake_enrolls_as_the_table_says(scenario: Scenario) -> None:
    play(scenario, FakeScenarioStore())


def test_the_table_covers_every_exit_of_the_pipeline_and_the_races() -> None:
    finals = [step.served for scenario in SCENARIOS for step in scenario.steps if step.served is not None]
    assert {served.stage for served in finals} == {name for name, _ in STAGES}
    # Not exits of the pipeline: serving without the database, and serving control's config after the
    # pipeline assigned a variant whose config fails its surface's schema (serving._checked_config).
    assert {served.reason for served in finals} == set(Reason) - {
        Reason.DATABASE_UNAVAILABLE,
        Reason.CONFIG_INVALID,
    }
    steps = [step for scenario in SCENARIOS for step in scenario.steps]
    assert sum(step.while_open is not None for step in steps) >= 2  # races
    assert sum(step.served is None for step in steps) >= 2  # stale holdouts
    assert len({scenario.name for scenario in SCENARIOS}) == len(SCENARIOS)


def test_every_part_of_the_statement_names_the_pipeline_stages_it_implements() -> None:
    """Each CTE of the enrollment statement opens with a comment labelling its stages ([stage]);
    every stage has a part except targeting and traffic, which only the pipeline decides."""
    stages = {name for name, _ in STAGES}
    parts = re.findall(r"(\w+) AS \(\n((?:\s*--[^\n]*\n)*)", ENROLL.statement)
    assert [name for name, _ in parts] == [
        "holdout_check",
        "holdout_seen",
        "member",
        "forced",
        "target",
        "existing",
        "joined",
        "dimension_seen",
        "dimension_final",
        "dimension_kept",
        "block",
        "inserted",
        "chosen",
        "exposed",
        "forced_exposed",
    ]
    labelled: set[str] = set()
    for name, comment in parts:
        labels = set(re.findall(r"\[(\w+)\]", comment))
        assert labels, f"the part {name} names no stage"
        assert labels <= stages, f"the part {name} names unknown stages {labels - stages}"
        labelled |= labels
    assert labelled == stages - {"targeting", "traffic"}
