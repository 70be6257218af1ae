"""Serving logic over an in-memory store: caching, one statement per request, stickiness, fail-open."""

from __future__ import annotations

import uuid

import pytest

from abtest.contract.bucketing import bucket_for
from abtest.domain.assignment import Reason
from abtest.domain.cache import TTLCache
from abtest.domain.experiments import Status
from abtest.domain.serving import AssignmentService
from abtest.errors import NotFound, Unavailable
from tests.unit.fakes import FakeStore, make_experiment


def server(store: FakeStore, ttl: float = 60.0) -> AssignmentService:
    return AssignmentService(store, store, experiment_ttl=ttl, catalog_ttl=ttl)


def test_assignment_follows_the_contract_and_is_sticky() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment())
    serve = server(store)
    for n in range(50):
        user = f"u{n}"
        expected = bucket_for(user, experiment.salt, [0.5, 0.5], 1.0)
        first = serve.assign(experiment.id, user)
        assert first.reason == Reason.ASSIGNED
        assert first.variant == experiment.variants[expected or 0]
        assert first.new_assignment
        again = serve.assign(experiment.id, user)
        assert (again.variant, again.new_assignment) == (first.variant, False)
    assert store.exposures == 100
    assert store.calls.count("serving_experiments") == 1, "warm requests must not re-read experiments"
    assert store.calls.count("enroll") == 100, "one statement per warm request"


def test_excluded_users_cost_one_read_only_statement() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment(traffic=0.0))
    serve = server(store)
    serve.assign(experiment.id, "warm-up")
    store.calls.clear()
    result = serve.assign(experiment.id, "anyone")
    assert result.reason == Reason.EXCLUDED_BY_TRAFFIC
    assert result.variant is None
    assert store.calls == ["enroll"]
    assert store.assignments == {}
    assert store.members == {}


def test_experiments_not_running_enroll_nobody() -> None:
    store = FakeStore()
    paused = store.add(make_experiment(status=Status.PAUSED))
    result = server(store).assign(paused.id, "u1")
    assert (result.reason, result.variant) == (Reason.NOT_RUNNING, None)
    assert store.assignments == {}


def test_a_paused_experiment_still_in_the_cache_enrolls_nobody() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment())
    serve = server(store)
    serve.assign(experiment.id, "first")
    store.set_status(experiment.id, Status.PAUSED)
    result = serve.assign(experiment.id, "second")
    assert result.reason == Reason.NOT_RUNNING
    assert (experiment.id, "second") not in store.assignments


def test_unknown_experiment_is_not_found() -> None:
    with pytest.raises(NotFound):
        server(FakeStore()).assign(uuid.uuid4(), "u")


def test_recommendations_serve_the_owner_of_the_users_bucket() -> None:
    store = FakeStore()
    store.add(make_experiment("checkout", surface="checkout"))
    first = store.add(make_experiment("first", share=0.5))
    second = store.add(make_experiment("second", share=0.5))
    serve = server(store)
    seen = set()
    for n in range(200):
        result = serve.recommendations(f"u{n}", 2, surface="recommendations")
        assert result.assignment is not None
        assert result.assignment.experiment is not None
        owner = first if store.members[("recommendations", f"u{n}")] == first.id else second
        assert result.assignment.experiment.id == owner.id
        seen.add(owner.name)
    assert seen == {"first", "second"}


def test_treatment_config_shapes_the_ranking() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment())
    serve = server(store)
    users = {"control": None, "treatment": None}
    n = 0
    while None in users.values():
        user = f"user{n}"
        index = bucket_for(user, experiment.salt, [0.5, 0.5], 1.0)
        users[experiment.variants[index or 0].name] = user
        store.profiles[user] = [0.0, 1.0]
        n += 1
    control = serve.recommendations(users["control"] or "", 2, surface="recommendations")
    treatment = serve.recommendations(users["treatment"] or "", 2, surface="recommendations")
    assert [i.item_id for i in control.items] == ["pop", "niche"]
    assert [i.item_id for i in treatment.items] == ["niche", "pop"]


def test_recommendations_fail_open_with_the_last_catalog() -> None:
    store = FakeStore()
    store.add(make_experiment())
    serve = server(store, ttl=0.0)
    assert not serve.recommendations("u1", 2, surface="recommendations").degraded
    store.down = True
    result = serve.recommendations("u2", 2, surface="recommendations")
    assert result.degraded
    assert result.assignment is not None
    assert (result.assignment.reason, result.assignment.variant) == (Reason.DATABASE_UNAVAILABLE, None)
    assert [i.item_id for i in result.items] == ["pop", "niche"]


def test_cold_container_with_the_database_down_serves_an_empty_list() -> None:
    store = FakeStore(down=True)
    result = server(store).recommendations("u", 3, surface="recommendations")
    assert (result.items, result.degraded) == ([], True)


def test_assignments_do_not_fail_open() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment())
    store.down = True
    with pytest.raises(Unavailable):
        server(store).assign(experiment.id, "u")


def test_ttl_cache_reloads_after_expiry_and_keeps_the_stale_value() -> None:
    clock = [0.0]
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        if len(loads) == 3:
            raise Unavailable("down")
        return len(loads)

    cache = TTLCache(load, ttl=10, clock=lambda: clock[0])
    assert cache.get() == 1
    clock[0] = 9.9
    assert cache.get() == 1
    clock[0] = 10.0
    assert cache.get() == 2
    clock[0] = 25.0
    with pytest.raises(Unavailable):
        cache.get()
    assert cache.stale() == 2
    cache.invalidate()
    assert cache.get() == 4
