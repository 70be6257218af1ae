"""Serving logic over an in-memory store: caching, exclusion without I/O, stickiness, fail-open."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from abtest.contract.bucketing import bucket_for
from abtest.domain.assignment import Enrollment
from abtest.domain.cache import TTLCache
from abtest.domain.models import CatalogItem, Experiment, Reason, Status, Variant
from abtest.domain.serving import AssignmentService
from abtest.errors import NotFound, Unavailable

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def make_experiment(
    name: str = "exp",
    *,
    status: Status = Status.RUNNING,
    traffic: float = 1.0,
    surface: str = "recommendations",
) -> Experiment:
    experiment_id = uuid.uuid4()
    variants = [
        Variant(
            id=uuid.uuid4(),
            name="control",
            description="",
            weight=0.5,
            config={"lora_boost": 0.0},
            position=0,
        ),
        Variant(
            id=uuid.uuid4(),
            name="treatment",
            description="",
            weight=0.5,
            config={"lora_boost": 1.0},
            position=1,
        ),
    ]
    return Experiment(
        id=experiment_id,
        name=name,
        description="",
        status=status,
        traffic_allocation=traffic,
        salt=str(experiment_id),
        surface=surface,
        variants=variants,
        created_at=NOW,
        updated_at=NOW,
        started_at=NOW if status != Status.DRAFT else None,
        completed_at=None,
    )


@dataclass
class FakeStore:
    experiments: list[Experiment]
    items: list[tuple[str, str, list[float], float]] = field(
        default_factory=lambda: [("pop", "", [1.0, 0.0], 100.0), ("niche", "", [0.0, 1.0], 1.0)]
    )
    profiles: dict[str, list[float]] = field(default_factory=dict)
    assignments: dict[tuple[UUID, str], UUID] = field(default_factory=dict)
    exposures: int = 0
    calls: list[str] = field(default_factory=list)
    down: bool = False

    def _call(self, name: str) -> None:
        if self.down:
            raise Unavailable("down")
        self.calls.append(name)

    def running_experiments(self) -> list[Experiment]:
        self._call("running_experiments")
        return [e for e in self.experiments if e.status == Status.RUNNING]

    def experiment(self, experiment_id: UUID) -> Experiment:
        self._call("experiment")
        for e in self.experiments:
            if e.id == experiment_id:
                return e
        raise NotFound("no such experiment")

    def enroll(
        self,
        experiment_id: UUID,
        user_id: str,
        variant_id: UUID,
        *,
        context: dict[str, Any] | None,
        record_exposure: bool,
        with_profile: bool = False,
    ) -> Enrollment:
        self._call("enroll")
        status = self.experiment(experiment_id).status
        self.calls.pop()
        if status != Status.RUNNING:
            return Enrollment(status, None, False, False, None)
        key = (experiment_id, user_id)
        created = key not in self.assignments
        self.assignments.setdefault(key, variant_id)
        self.exposures += record_exposure
        profile = self.profiles.get(user_id) if with_profile else None
        return Enrollment(status, self.assignments[key], created, record_exposure, profile)

    def catalog(self) -> list[CatalogItem]:
        self._call("catalog")
        return [CatalogItem(id=i, title=t, embedding=e, popularity=p) for i, t, e, p in self.items]


def server(store: FakeStore, ttl: float = 60.0) -> AssignmentService:
    return AssignmentService(store, store, experiment_ttl=ttl, catalog_ttl=ttl)


def test_assignment_follows_the_contract_and_is_sticky() -> None:
    experiment = make_experiment()
    store = FakeStore([experiment])
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
    assert store.calls.count("running_experiments") == 1, "warm requests must not re-read experiments"


def test_excluded_users_cost_no_database_call() -> None:
    experiment = make_experiment(traffic=0.0)
    store = FakeStore([experiment])
    serve = server(store)
    serve.assign(experiment.id, "warm-up")
    store.calls.clear()
    result = serve.assign(experiment.id, "anyone")
    assert result.reason == Reason.EXCLUDED_BY_TRAFFIC
    assert result.variant is None
    assert store.calls == []


def test_experiments_not_running_enroll_nobody() -> None:
    paused = make_experiment(status=Status.PAUSED)
    store = FakeStore([paused])
    result = server(store).assign(paused.id, "u1")
    assert (result.reason, result.variant) == (Reason.NOT_RUNNING, None)
    assert store.assignments == {}


def test_a_paused_experiment_still_in_the_cache_enrolls_nobody() -> None:
    experiment = make_experiment()
    store = FakeStore([experiment])
    serve = server(store)
    serve.assign(experiment.id, "first")
    store.experiments[0] = experiment.model_copy(update={"status": Status.PAUSED})
    result = serve.assign(experiment.id, "second")
    assert result.reason == Reason.NOT_RUNNING
    assert (experiment.id, "second") not in store.assignments


def test_unknown_experiment_is_not_found() -> None:
    with pytest.raises(NotFound):
        server(FakeStore([])).assign(uuid.uuid4(), "u")


def test_recommendations_pick_the_first_running_experiment_of_the_surface() -> None:
    other_surface = make_experiment("checkout", surface="checkout")
    first = make_experiment("first")
    second = make_experiment("second")
    store = FakeStore([other_surface, first, second])
    result = server(store).recommendations("u1", 2, surface="recommendations")
    assert result.assignment is not None
    assert result.assignment.experiment.name == "first"
    assert result.assignment.tag in {"first:control", "first:treatment"}


def test_treatment_config_shapes_the_ranking() -> None:
    experiment = make_experiment()
    store = FakeStore([experiment], profiles={})
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
    experiment = make_experiment()
    store = FakeStore([experiment])
    serve = server(store, ttl=0.0)
    assert not serve.recommendations("u1", 2, surface="recommendations").degraded
    store.down = True
    result = serve.recommendations("u2", 2, surface="recommendations")
    assert result.degraded
    assert result.assignment is None
    assert [i.item_id for i in result.items] == ["pop", "niche"]


def test_cold_container_with_the_database_down_serves_an_empty_list() -> None:
    store = FakeStore([], down=True)
    result = server(store).recommendations("u", 3, surface="recommendations")
    assert (result.items, result.degraded) == ([], True)


def test_assignments_do_not_fail_open() -> None:
    experiment = make_experiment()
    store = FakeStore([experiment], down=True)
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
