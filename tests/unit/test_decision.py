"""The decision pipeline (abtest.domain.decision): one reason per exit, in stage order, and the stored
assignment winning over a stale cache. Pure: namespaces and stored facts are built by hand."""

from __future__ import annotations

import uuid

from abtest.contract.bucketing import bucket_for
from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.assignment import Enrollment, LiveExperiment, Reason
from abtest.domain.decision import STAGES, Subject, decide
from abtest.domain.experiments import Experiment, Status
from abtest.domain.namespaces import Namespace
from abtest.domain.serving import AssignmentService
from tests.unit.fakes import FakeStore, make_experiment

SALT = "ns-test"


def namespace(*owners: tuple[Experiment, range]) -> Namespace:
    table: list[uuid.UUID | None] = [None] * NAMESPACE_BUCKETS
    for experiment, buckets in owners:
        for bucket in buckets:
            table[bucket] = experiment.id
    experiments = {e.id: LiveExperiment.of(e) for e, _ in owners}
    return Namespace("recommendations", SALT, experiments, table)


def user_in(ns: Namespace, buckets: range, enrolled_by: Experiment | None = None) -> str:
    """A user id whose bucket is in `buckets` (and, if given, whom `enrolled_by`'s traffic admits)."""
    for n in range(100_000):
        user = f"user-{n}"
        if ns.bucket(user) in buckets and (
            enrolled_by is None
            or bucket_for(user, enrolled_by.salt, [0.5, 0.5], enrolled_by.traffic_allocation) is not None
        ):
            return user
    raise AssertionError("no such user")


def test_the_stages_are_an_ordered_list() -> None:
    assert [name for name, _ in STAGES] == [
        "experiment",
        "running",
        "override",
        "holdout",
        "stored_assignment",
        "namespace",
        "targeting",
        "traffic",
        "variant",
    ]


def test_every_exit_has_its_reason() -> None:
    a = make_experiment("a")
    b = make_experiment("b", traffic=0.0)
    paused = make_experiment("p", status=Status.PAUSED)
    ns = namespace((a, range(0, 4000)), (b, range(4000, 7000)), (paused, range(7000, 8000)))
    in_a, in_b, in_paused, free = (
        user_in(ns, range(0, 4000)),
        user_in(ns, range(4000, 7000)),
        user_in(ns, range(7000, 8000)),
        user_in(ns, range(8000, 10_000)),
    )

    def reason(user: str, requested: Experiment | None = None) -> tuple[Reason, str]:
        running = LiveExperiment.of(requested) if requested is not None else None
        decision = decide(Subject(user, ns, running))
        return decision.reason, decision.stage

    assert reason(in_a) == (Reason.ASSIGNED, "variant")
    assert reason(in_b) == (Reason.EXCLUDED_BY_TRAFFIC, "traffic")
    assert reason(in_paused) == (Reason.NOT_RUNNING, "running")
    assert reason(free) == (Reason.NOT_IN_SHARE, "experiment")
    assert reason(in_b, a) == (Reason.NOT_IN_SHARE, "namespace")
    assert reason(in_a, a) == (Reason.ASSIGNED, "variant")
    empty = Namespace("recommendations", None)
    assert decide(Subject("anyone", empty)).reason == Reason.NO_EXPERIMENT


def test_a_stored_assignment_wins_over_a_stale_cache() -> None:
    # The cache still has traffic 0; another container (fresher cache) enrolled the user.
    stale = make_experiment("a", traffic=0.0)
    ns = namespace((stale, range(NAMESPACE_BUCKETS)))
    user = "user-1"
    assert decide(Subject(user, ns)).reason == Reason.EXCLUDED_BY_TRAFFIC
    variant = stale.variants[1]
    stored = Enrollment(stale.id, Status.RUNNING, variant.id, member_of=stale.id)
    decision = decide(Subject(user, ns, stored=stored))
    assert (decision.reason, decision.variant, decision.stored) == (Reason.ASSIGNED, variant, True)


def test_a_member_stays_with_their_experiment_whatever_the_bucket_says() -> None:
    a, b = make_experiment("a"), make_experiment("b")
    ns = namespace((a, range(0, 5000)), (b, range(5000, 10_000)))
    user = user_in(ns, range(5000, 10_000))  # b's bucket, but a member of a (e.g. migrated)
    paused_a = Enrollment(a.id, Status.PAUSED, a.variants[0].id, member_of=a.id)
    decision = decide(Subject(user, ns, stored=paused_a))
    assert (decision.reason, decision.variant) == (Reason.NOT_RUNNING, None)
    assert decision.experiment is not None
    assert decision.experiment.id == a.id
    # Asked about b directly: the user belongs to a sibling.
    in_b_bucket = Enrollment(b.id, Status.RUNNING, None, member_of=a.id)
    asked = decide(Subject(user, ns, LiveExperiment.of(b), stored=in_b_bucket))
    assert asked.reason == Reason.IN_OTHER_EXPERIMENT


def test_the_database_status_beats_the_cached_one() -> None:
    a = make_experiment("a")
    ns = namespace((a, range(NAMESPACE_BUCKETS)))
    paused_now = Enrollment(a.id, Status.PAUSED, None, member_of=None)
    assert decide(Subject("user-1", ns, stored=paused_now)).reason == Reason.NOT_RUNNING


def test_service_serves_the_stored_variant_when_its_cache_predates_a_traffic_increase() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment("a", traffic=0.0))
    serve = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    user = next(f"u{n}" for n in range(1000) if bucket_for(f"u{n}", experiment.salt, [0.5, 0.5], 1.0) == 1)
    assert serve.assign(experiment.id, user).reason == Reason.EXCLUDED_BY_TRAFFIC  # cache loaded
    # Another container, after traffic went to 1, enrolled the user.
    store._replace(experiment.id, traffic_allocation=1.0)
    fresh = AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)
    assert fresh.assign(experiment.id, user).new_assignment
    exposures = store.exposures
    for result in (
        serve.assign(experiment.id, user),
        serve.recommendations(user, 1, surface="recommendations").assignment,
    ):
        assert result is not None
        assert (result.reason, result.variant) == (Reason.ASSIGNED, experiment.variants[1])
    assert store.exposures == exposures + 2


def test_paused_members_get_defaults_and_are_never_enrolled_elsewhere() -> None:
    store = FakeStore()
    a = store.add(make_experiment("a", share=0.5))
    b = store.add(make_experiment("b", share=0.5))
    serve = AssignmentService(store, store, experiment_ttl=0, catalog_ttl=60)
    users = [f"u{n}" for n in range(300)]
    first = {u: serve.recommendations(u, 1, surface="recommendations").assignment for u in users}
    members_a = {u for u, r in first.items() if r is not None and r.experiment and r.experiment.id == a.id}
    assert 100 < len(members_a) < 200
    store.set_status(a.id, Status.PAUSED)
    for user in members_a:
        result = serve.recommendations(user, 1, surface="recommendations").assignment
        assert result is not None
        assert (result.reason, result.variant) == (Reason.NOT_RUNNING, None)
        assert serve.assign(b.id, user).variant is None
    store.set_status(a.id, Status.COMPLETED)
    for user in members_a:  # a's buckets are free now; b's never grew, so nobody moves to b
        assert serve.assign(b.id, user).reason == Reason.NOT_IN_SHARE
    assert not any((b.id, user) in store.assignments for user in members_a)
