"""The targeting stage of the decision pipeline and of the service: after the namespace, before the
traffic; at enrollment only (a stored assignment wins); nothing stored for a user who does not match;
saved groups reach it through the serving cache, so a warm request is still one statement."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.assignment import Enrollment, LiveExperiment, Reason
from abtest.domain.decision import Subject, decide
from abtest.domain.experiments import Status
from abtest.domain.serving import AssignmentService
from tests.unit.fakes import FakeStore, make_experiment
from tests.unit.test_decision import namespace, user_in

FRANCE = {"country": {"$in": ["FR"]}}


def test_targeting_decides_after_the_namespace_and_before_the_traffic() -> None:
    targeted = make_experiment("t", targeting=FRANCE)
    closed = make_experiment("closed", traffic=0.0, targeting=FRANCE)
    ns = namespace((targeted, range(0, 5000)), (closed, range(5000, 10_000)))
    in_t, in_closed = user_in(ns, range(0, 5000)), user_in(ns, range(5000, 10_000))

    def outcome(user: str, attributes: dict[str, Any], requested: Any = None) -> tuple[Reason, str]:
        running = LiveExperiment.of(requested) if requested is not None else None
        decision = decide(Subject(user, ns, running, attributes=attributes))
        return decision.reason, decision.stage

    assert outcome(in_t, {"country": "FR"}) == (Reason.ASSIGNED, "variant")
    assert outcome(in_t, {"country": "DE"}) == (Reason.TARGETING_NOT_MET, "targeting")
    assert outcome(in_t, {}) == (Reason.TARGETING_NOT_MET, "targeting")
    # The namespace exits first: a user of another experiment's bucket is not in this one's share.
    assert outcome(in_closed, {"country": "DE"}, targeted) == (Reason.NOT_IN_SHARE, "namespace")
    # Targeting exits before the traffic: a non-matching user never reaches the traffic stage.
    assert outcome(in_closed, {"country": "DE"}) == (Reason.TARGETING_NOT_MET, "targeting")
    assert outcome(in_closed, {"country": "FR"}) == (Reason.EXCLUDED_BY_TRAFFIC, "traffic")


def test_a_stored_assignment_wins_over_attributes_that_no_longer_match() -> None:
    targeted = make_experiment("t", targeting=FRANCE)
    ns = namespace((targeted, range(NAMESPACE_BUCKETS)))
    stored = Enrollment(targeted.id, Status.RUNNING, targeted.variants[1].id, member_of=targeted.id)
    decision = decide(Subject("user-1", ns, stored=stored, attributes={"country": "DE"}))
    assert (decision.reason, decision.variant, decision.stage) == (
        Reason.ASSIGNED,
        targeted.variants[1],
        "stored_assignment",
    )


def test_saved_groups_come_with_the_subject() -> None:
    targeted = make_experiment("t", targeting={"id": {"$inGroup": "beta"}})
    ns = namespace((targeted, range(NAMESPACE_BUCKETS)))
    groups = {"beta": ["ann"]}
    assert decide(Subject("u", ns, attributes={"id": "ann"}, saved_groups=groups)).reason == Reason.ASSIGNED
    assert decide(Subject("u", ns, attributes={"id": "bob"}, saved_groups=groups)).reason == (
        Reason.TARGETING_NOT_MET
    )
    assert decide(Subject("u", ns, attributes={"id": "ann"})).reason == Reason.TARGETING_NOT_MET


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["FR", "DE", "fr", None, 5]),
    st.booleans(),
)
def test_property_only_matching_users_are_proposed_and_stored_users_are_never_moved(
    user: str, country: Any, stored: bool
) -> None:
    targeted = make_experiment("t", targeting=FRANCE)
    ns = namespace((targeted, range(NAMESPACE_BUCKETS)))
    attributes = {} if country is None else {"country": country}
    facts = (
        Enrollment(targeted.id, Status.RUNNING, targeted.variants[0].id, member_of=targeted.id)
        if stored
        else None
    )
    decision = decide(Subject(user, ns, stored=facts, attributes=attributes))
    if stored:
        assert (decision.reason, decision.variant) == (Reason.ASSIGNED, targeted.variants[0])
    elif country == "FR":
        assert decision.reason == Reason.ASSIGNED
        assert decision.proposal
    else:
        assert decision.reason == Reason.TARGETING_NOT_MET
        assert decision.variant is None


def test_service_stores_nothing_for_users_who_do_not_match() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("t", targeting=FRANCE))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    for n in range(50):
        result = serve.assign(experiment.id, f"de-{n}", attributes={"country": "DE"})
        assert (result.reason, result.variant) == (Reason.TARGETING_NOT_MET, None)
        recs = serve.recommendations(f"de-{n}", 1, surface="recommendations", attributes={"country": "DE"})
        assert recs.assignment is not None
        assert recs.assignment.reason == Reason.TARGETING_NOT_MET
    assert store.assignments == {}
    assert store.members == {}
    assert store.exposures == 0
    enrolled = serve.assign(experiment.id, "fr-1", attributes={"country": "FR"})
    assert enrolled.reason == Reason.ASSIGNED
    assert enrolled.new_assignment
    # Enrolled: later attributes do not move them, on either route.
    again = serve.assign(experiment.id, "fr-1", attributes={"country": "DE"})
    assert (again.reason, again.variant) == (Reason.ASSIGNED, enrolled.variant)
    recs = serve.recommendations("fr-1", 1, surface="recommendations", attributes={})
    assert recs.assignment is not None
    assert recs.assignment.variant == enrolled.variant


def test_saved_groups_load_with_the_view_and_a_warm_request_is_one_statement() -> None:
    store = FakeStore(groups={"beta": ["ann", "cat"], "unused": ["x"]})
    experiment = store.add(make_experiment("t", targeting={"id": {"$inGroup": "beta"}}))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    assert serve.assign(experiment.id, "ann", attributes={"id": "ann"}).reason == Reason.ASSIGNED
    assert store.calls.count("saved_groups") == 1
    store.calls.clear()
    assert serve.assign(experiment.id, "bob", attributes={"id": "bob"}).reason == Reason.TARGETING_NOT_MET
    assert serve.assign(experiment.id, "cat", attributes={"id": "cat"}).reason == Reason.ASSIGNED
    assert store.calls == ["enroll", "enroll"]
    # A group edit reaches the container with its next reload (one TTL).
    store.groups["beta"].append("bob")
    assert serve.assign(experiment.id, "bob", attributes={"id": "bob"}).reason == Reason.TARGETING_NOT_MET
    fresh = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    assert fresh.assign(experiment.id, "bob", attributes={"id": "bob"}).reason == Reason.ASSIGNED


def test_untargeted_experiments_load_no_saved_groups() -> None:
    store = FakeStore(groups={"beta": ["ann"]})
    experiment = store.add(make_experiment("plain"))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    assert serve.assign(experiment.id, "anyone").reason in (Reason.ASSIGNED, Reason.EXCLUDED_BY_TRAFFIC)
    assert "saved_groups" not in store.calls
