"""Overrides in the pure pipeline and the service: the `override` stage right after `running`, an
override always winning while the experiment runs and never otherwise, forced users never stored,
and the rules of the write (variant by name, the per-experiment bound, user ids, completed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.assignment import Enrollment, LiveExperiment, Reason
from abtest.domain.decision import STAGES, Subject, decide
from abtest.domain.experiments import Status
from abtest.domain.overrides import (
    check_overridable,
    check_room,
    check_user_id,
    forced_variant,
)
from abtest.domain.serving import AssignmentService
from abtest.errors import Conflict, InvalidInput
from abtest.limits import MAX_OVERRIDES_PER_EXPERIMENT
from tests.unit.fakes import FakeStore, make_experiment
from tests.unit.test_decision import namespace, user_in


def test_the_override_stage_comes_right_after_running() -> None:
    names = [name for name, _ in STAGES]
    assert names.index("override") == names.index("running") + 1
    assert names.index("override") < names.index("stored_assignment")


def test_a_forced_user_is_served_the_forced_variant_over_their_stored_assignment() -> None:
    a = make_experiment("a")
    ns = namespace((a, range(NAMESPACE_BUCKETS)))
    control, treatment = a.variants
    stored = Enrollment(a.id, Status.RUNNING, control.id, member_of=a.id, forced_variant_id=treatment.id)
    for requested in (None, LiveExperiment.of(a)):
        decision = decide(Subject("user-1", ns, requested, stored))
        assert (decision.reason, decision.variant, decision.stage) == (Reason.OVERRIDE, treatment, "override")
        assert not decision.proposal
        assert not decision.stored
    # Without the override the same facts serve the stored assignment.
    unforced = Enrollment(a.id, Status.RUNNING, control.id, member_of=a.id)
    assert decide(Subject("user-1", ns, stored=unforced)).variant == control


def test_on_a_surface_an_override_beats_the_membership_and_the_bucket() -> None:
    a, b = make_experiment("a", share=0.5), make_experiment("b", share=0.5)
    ns = namespace((a, range(0, 5000)), (b, range(5000, 10_000)))
    user = user_in(ns, range(0, 5000))  # a's bucket, and a member of a
    forced = Enrollment(b.id, Status.RUNNING, None, member_of=a.id, forced_variant_id=b.variants[0].id)
    decision = decide(Subject(user, ns, stored=forced))
    assert decision.experiment is not None
    assert (decision.experiment.id, decision.reason, decision.variant) == (
        b.id,
        Reason.OVERRIDE,
        b.variants[0],
    )


def test_an_override_of_an_experiment_that_is_not_running_is_not_served() -> None:
    a = make_experiment("a")
    ns = namespace((a, range(NAMESPACE_BUCKETS)))
    paused = Enrollment(a.id, Status.PAUSED, None, member_of=None, forced_variant_id=a.variants[1].id)
    decision = decide(Subject("user-1", ns, LiveExperiment.of(a), paused))
    assert (decision.reason, decision.variant, decision.stage) == (Reason.NOT_RUNNING, None, "running")


statuses = st.sampled_from(list(Status))


@settings(max_examples=300, deadline=None)
@given(
    status=statuses,
    cached_status=st.sampled_from([Status.RUNNING, Status.PAUSED]),
    forced_index=st.integers(0, 2),
    stored_index=st.none() | st.integers(0, 2),
    member=st.booleans(),
    asked=st.booleans(),
    traffic=st.sampled_from([0.0, 0.3, 1.0]),
    user=st.text(min_size=1, max_size=12),
)
def test_an_override_wins_while_running_and_never_otherwise(
    status: Status,
    cached_status: Status,
    forced_index: int,
    stored_index: int | None,
    member: bool,
    asked: bool,
    traffic: float,
    user: str,
) -> None:
    """Whatever the stored assignment, membership, traffic, bucket or cache say: the database's status
    running means the forced variant, any other status means no variant at all from the override."""
    a = make_experiment("a", status=cached_status, traffic=traffic, weights=(0.2, 0.3, 0.5), share=0.5)
    sibling = make_experiment("s", share=0.5)
    ns = namespace((a, range(0, 5000)), (sibling, range(5000, 10_000)))
    forced = a.variants[forced_index]
    stored = Enrollment(
        a.id,
        status,
        a.variants[stored_index].id if stored_index is not None else None,
        member_of=(a.id if stored_index is not None else sibling.id) if member else None,
        forced_variant_id=forced.id,
    )
    decision = decide(Subject(user, ns, LiveExperiment.of(a) if asked else None, stored))
    if status == Status.RUNNING:
        assert (decision.reason, decision.variant) == (Reason.OVERRIDE, forced)
        assert decision.experiment is not None
        assert decision.experiment.id == a.id
    else:
        assert decision.reason != Reason.OVERRIDE
        assert decision.reason == Reason.NOT_RUNNING
        assert decision.variant is None


def test_the_service_serves_an_override_at_once_and_never_stores_it() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("a"))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    forced = experiment.variants[0]
    store.overrides[(experiment.id, "qa-1")] = forced.id  # after the cache was loaded: no reload needed
    for result in (
        serve.assign(experiment.id, "qa-1"),
        serve.recommendations("qa-1", 1, surface="recommendations").assignment,
    ):
        assert result is not None
        assert (result.reason, result.variant, result.source) == (Reason.OVERRIDE, forced, "override")
        assert result.tag == f"a:{forced.name}"
        assert not result.new_assignment
    assert store.assignments == {}
    assert store.members == {}
    assert (store.exposures, store.forced_exposures) == (0, 2)
    del store.overrides[(experiment.id, "qa-1")]
    normal = serve.assign(experiment.id, "qa-1")
    assert (normal.reason, normal.source, normal.new_assignment) == (Reason.ASSIGNED, "assignment", True)
    assert store.exposures == 1


def test_an_assigned_user_gets_their_assignment_back_when_the_override_goes() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("a"))
    serve = AssignmentService(store, store, experiment_ttl=0, catalog_ttl=60)
    real = serve.assign(experiment.id, "u1").variant
    assert real is not None
    other = next(v for v in experiment.variants if v.id != real.id)
    store.overrides[(experiment.id, "u1")] = other.id
    assert serve.assign(experiment.id, "u1").variant == other
    assert store.assignments[(experiment.id, "u1")] == real.id  # kept
    del store.overrides[(experiment.id, "u1")]
    assert serve.assign(experiment.id, "u1").variant == real


def test_no_variant_means_no_source() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("a", traffic=0.0))
    serve = AssignmentService(store, store, experiment_ttl=0, catalog_ttl=60)
    assert serve.assign(experiment.id, "anyone").source is None


def test_the_write_rules() -> None:
    experiment = make_experiment("a")
    assert forced_variant(experiment, "treatment") == experiment.variants[1]
    with pytest.raises(InvalidInput) as unknown:
        forced_variant(experiment, "Treatment")
    assert (unknown.value.code, unknown.value.field) == ("unknown_variant", "variant")
    check_room(MAX_OVERRIDES_PER_EXPERIMENT - 1, replacing=False)
    check_room(MAX_OVERRIDES_PER_EXPERIMENT, replacing=True)
    with pytest.raises(Conflict) as full:
        check_room(MAX_OVERRIDES_PER_EXPERIMENT, replacing=False)
    assert full.value.code == "too_many_overrides"
    for status in (Status.DRAFT, Status.RUNNING, Status.PAUSED):
        check_overridable(make_experiment("x", status=status))
    with pytest.raises(Conflict) as completed:
        check_overridable(make_experiment("x", status=Status.COMPLETED))
    assert completed.value.code == "experiment_completed"


@pytest.mark.parametrize("bad", ["", "x" * 257, "a\x00b", "\ud800"])
def test_path_user_ids_meet_the_body_limits(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_user_id(bad)
    assert refused.value.field == "user_id"


def test_good_user_ids_pass() -> None:
    for good in ("qa-1", "ユーザー", "x" * 256, "a b@c"):
        assert check_user_id(good) == good


def test_a_warm_forced_request_costs_one_statement() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("a"))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    serve.recommendations("warm", 1, surface="recommendations")  # loads the caches
    store.overrides[(experiment.id, "qa")] = experiment.variants[1].id
    store.calls.clear()
    assert serve.recommendations("qa", 1, surface="recommendations").assignment is not None
    assert serve.assign(experiment.id, "qa").source == "override"
    assert store.calls == ["enroll", "enroll"]
