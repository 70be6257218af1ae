"""The lifecycle state machine and the edit rules, without a database."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from abtest.domain.experiments import Experiment, Status, Variant, VariantIn
from abtest.domain.lifecycle import (
    CONVERTING,
    ENROLLING,
    TRANSITIONS,
    check_patch,
    check_transition,
)
from abtest.errors import Conflict, InvalidTransition

ALLOWED = {
    ("draft", "running"),
    ("running", "paused"),
    ("paused", "running"),
    ("running", "completed"),
    ("paused", "completed"),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Status, Status)))
def test_transition_matrix(current: Status, target: Status) -> None:
    if (current.value, target.value) in ALLOWED or current == target:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransition) as raised:
            check_transition(current, target)
        assert raised.value.allowed == [s.value for s in TRANSITIONS[current]]
        assert raised.value.field == "status"


def test_completed_is_final_and_reached_from_running_or_paused() -> None:
    assert TRANSITIONS[Status.COMPLETED] == ()
    assert {source for source, targets in TRANSITIONS.items() if Status.COMPLETED in targets} == {
        Status.RUNNING,
        Status.PAUSED,
    }


def test_only_running_enrolls_and_paused_still_converts() -> None:
    assert {Status.RUNNING} == ENROLLING
    assert {Status.RUNNING, Status.PAUSED} == CONVERTING


def _experiment(status: Status, traffic: float = 0.5) -> Experiment:
    now = datetime.now(UTC)
    return Experiment(
        id=uuid.uuid4(),
        name="e",
        description="",
        status=status,
        traffic_allocation=traffic,
        salt="s",
        surface="recommendations",
        namespace_share=0.5,
        variants=[],
        created_at=now,
        updated_at=now,
        started_at=None,
        completed_at=None,
    )


def test_drafts_accept_any_change() -> None:
    changes = {"name": "x", "variants": [], "traffic_allocation": 0.1}
    assert check_patch(_experiment(Status.DRAFT), changes) == changes


@pytest.mark.parametrize("status", [Status.RUNNING, Status.PAUSED])
def test_started_experiments_accept_description_and_more_traffic(status: Status) -> None:
    changes = {"description": "d", "traffic_allocation": 0.9}
    assert check_patch(_experiment(status), changes) == changes
    assert check_patch(_experiment(status), {"traffic_allocation": 0.5}) == {"traffic_allocation": 0.5}
    assert check_patch(_experiment(status), {"namespace_share": 0.7}) == {"namespace_share": 0.7}


@pytest.mark.parametrize("status", [Status.RUNNING, Status.PAUSED])
@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"traffic_allocation": 0.4}, "traffic_decrease", "traffic_allocation"),
        ({"namespace_share": 0.4}, "share_decrease", "namespace_share"),
        ({"variants": []}, "field_frozen", "variants"),
        ({"name": "x", "description": "d"}, "field_frozen", "name"),
    ],
)
def test_started_experiments_refuse_other_changes(
    status: Status, changes: dict[str, object], code: str, field: str
) -> None:
    with pytest.raises(Conflict) as raised:
        check_patch(_experiment(status), changes)
    assert (raised.value.code, raised.value.field) == (code, field)


def test_completed_refuses_everything() -> None:
    with pytest.raises(Conflict) as raised:
        check_patch(_experiment(Status.COMPLETED), {"description": "d"})
    assert raised.value.code == "experiment_completed"


@pytest.mark.parametrize("status", [Status.RUNNING, Status.PAUSED])
def test_started_experiments_may_change_only_their_configs(status: Status) -> None:
    # Given a started experiment, the same variants with new configs are a config change (a new phase);
    # any other change of the variants (a weight, a name, the order) stays frozen.
    started = make_draft_on("checkout", config={"button": "green"}).model_copy(update={"status": status})

    def variants(*specs: tuple[str, float, dict[str, object]]) -> list[VariantIn]:
        return [VariantIn(name=n, weight=w, config=c) for n, w, c in specs]

    changes = {"variants": variants(("a", 0.5, {"button": "red"}), ("b", 0.5, {"button": "blue"}))}
    assert check_patch(started, changes) == changes
    for moved in (
        variants(("a", 0.4, {}), ("b", 0.6, {})),
        variants(("b", 0.5, {}), ("a", 0.5, {})),
        variants(("a", 0.5, {}), ("c", 0.5, {})),
    ):
        with pytest.raises(Conflict) as raised:
            check_patch(started, {"variants": moved})
        assert raised.value.code == "field_frozen"


def make_draft_on(surface: str, config: dict[str, object] | None = None) -> Experiment:
    experiment_id = uuid.uuid4()
    now = datetime(2026, 11, 1, tzinfo=UTC)
    variants = [
        Variant(id=uuid.uuid4(), name=n, description="", weight=0.5, config=config or {}, position=i)
        for i, n in enumerate(("a", "b"))
    ]
    return Experiment(
        id=experiment_id,
        name="x",
        description="",
        status=Status.DRAFT,
        traffic_allocation=1.0,
        salt=str(experiment_id),
        surface=surface,
        variants=variants,
        created_at=now,
        updated_at=now,
        started_at=None,
        completed_at=None,
    )
