"""Plays the enrollment scenarios (tests/scenarios/enrollment.py) against a store: the in-memory fake
or the real statement. Pure apart from the store it is given: the rows given, the cache's view, the
requests and the decisions are all built here, once, for both."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from abtest.contract.holdouts import HoldoutGroup, holdout_group, holdout_size
from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.assignment import Enrollment, EnrollRequest, Reason
from abtest.domain.decision import Decision, Subject, decide
from abtest.domain.experiments import Experiment, Status, Variant
from abtest.domain.holdouts import Holdout, memberships, running_holdouts
from abtest.domain.lifecycle import HOLDING_BUCKETS
from abtest.domain.namespaces import NamespaceAllocation, build_view
from tests.scenarios.enrollment import FIRST, USER, Ask, Found, Given, Hold, Rows, Scenario, Step

NOW = datetime(2026, 11, 1, tzinfo=UTC)
HOLDOUT_PERCENT = 0.1
PROFILE = [0.25, 0.75]
VARIANTS = (("control", 1.0), ("treatment", 0.0))


def ident(kind: str, name: str) -> UUID:
    """A stable id per name, so the same scenario has the same ids in both stores."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"abtest-enrollment-scenario:{kind}:{name}")


def holdout_salt(key: str, group: HoldoutGroup | None) -> str:
    """The first salt `key-<n>` that puts USER in `group` (deterministic, so both stores agree)."""
    size = holdout_size(HOLDOUT_PERCENT)
    for n in range(10_000):
        salt = f"{key}-{n}"
        if holdout_group(salt, USER, size) == group:
            return salt
    raise AssertionError(f"no salt puts {USER} in {group}")


class World:
    """The rows a scenario gives, as domain models and ids, and the names of those ids."""

    def __init__(self, given: Given) -> None:
        self.given = given
        self.experiments = {e.key: self.experiment(e.key) for e in given.experiments}
        self.holdouts = {h.key: self.holdout(h) for h in given.holdouts}
        self.names: dict[UUID, str] = {}
        for key, experiment in self.experiments.items():
            self.names[experiment.id] = key
            for variant in experiment.variants:
                self.names[variant.id] = f"{key}.{variant.name}"
        for key, holdout in self.holdouts.items():
            self.names[holdout.id] = key

    def experiment(self, key: str, status: Status | None = None) -> Experiment:
        spec = next(e for e in self.given.experiments if e.key == key)
        variants = [
            Variant(
                id=ident("variant", f"{key}.{name}"),
                name=name,
                description="",
                weight=w,
                config={},
                position=i,
            )
            for i, (name, w) in enumerate(VARIANTS)
        ]
        status = status or spec.status
        return Experiment(
            id=ident("experiment", key),
            name=f"scenario-{key}",
            description="",
            status=status,
            traffic_allocation=spec.traffic,
            salt=f"salt-{key}",
            surface=spec.surface,
            variants=variants,
            targeting=dict(spec.targeting),
            created_at=NOW,
            updated_at=NOW,
            started_at=NOW,
            completed_at=NOW if status == Status.COMPLETED else None,
        )

    def holdout(self, spec: Hold, status: Status | None = None) -> Holdout:
        return Holdout(
            id=ident("holdout", spec.key),
            name=f"scenario-{spec.key}",
            salt=holdout_salt(spec.key, spec.group),
            percent=HOLDOUT_PERCENT,
            surfaces=None if spec.surfaces is None else list(spec.surfaces),
            all_surfaces=spec.surfaces is None,
            status=status or spec.status,
            created_at=NOW,
            updated_at=NOW,
            started_at=NOW,
            completed_at=None,
        )

    def id_of(self, name: str) -> UUID:
        """The id of "A" (experiment), "A.control" (variant) or "H" (holdout)."""
        if "." in name:
            return ident("variant", name)
        return ident("holdout" if name in self.holdouts else "experiment", name)

    def name_of(self, ident_: UUID | None) -> str | None:
        return None if ident_ is None else self.names[ident_]

    # -- the asking container's cache and the service's two decisions

    def subject(self, ask: Ask) -> Subject:
        """What the pipeline sees before the statement: the cache's view of this request."""
        cached = dict(ask.cached)
        statuses = {e.key: cached.get(e.key, e.status) for e in self.given.experiments}
        live = [self.experiment(key, status) for key, status in statuses.items() if status in HOLDING_BUCKETS]
        surface = ask.surface if ask.experiment is None else self.experiments[ask.experiment].surface
        owner = ask.owner
        if owner == FIRST:
            owner = next((self.names[e.id] for e in live if e.surface == surface), None)
        allocations = [
            NamespaceAllocation(
                s,
                f"namespace-{s}",
                {ident("experiment", owner): [(0, NAMESPACE_BUCKETS)]} if s == surface and owner else {},
            )
            for s in sorted({e.surface for e in live})
        ]
        known = ask.cached_holdouts
        if known is None:
            known = tuple(h.key for h in self.given.holdouts if h.status == Status.RUNNING)
        holdouts = running_holdouts(
            self.holdout(h, Status.RUNNING) for h in self.given.holdouts if h.key in known
        )
        view = build_view(live, allocations, {}, holdouts)
        requested = None
        if ask.experiment is not None:
            requested = view.experiments.get(ident("experiment", ask.experiment))
            assert requested is not None, "the service asks the statement only about experiments it holds"
        return Subject(
            USER,
            view.namespace(surface),
            requested,
            attributes=dict(ask.attributes),
            holdouts=view.holdouts_covering(surface),
        )

    def request(self, ask: Ask, subject: Subject, first: Decision) -> EnrollRequest:
        """The request the service (AssignmentService._serve) sends after its first decision."""
        asked = None if ask.experiment is None else ident("experiment", ask.experiment)
        proposal = first if first.proposal else None
        return EnrollRequest(
            surface=subject.namespace.surface,
            user_id=USER,
            experiment_id=first.experiment.id if first.experiment is not None else asked,
            variant_id=proposal.variant.id if proposal is not None and proposal.variant else None,
            follow_membership=asked is None,
            record_exposure=ask.record_exposure,
            with_profile=ask.with_profile,
            holdout_ids=tuple(h.id for h in subject.holdouts),
            holdout_members=memberships(subject.holdouts, USER),
        )

    def enrollment(self, found: Found) -> Enrollment:
        """The Enrollment a `Found` names."""

        def opt(name: str | None) -> UUID | None:
            return None if name is None else self.id_of(name)

        return Enrollment(
            experiment_id=opt(found.experiment),
            status=found.status,
            variant_id=opt(found.variant),
            member_of=opt(found.member_of),
            created=found.created,
            exposed=found.exposed,
            profile=list(PROFILE) if found.profile else None,
            forced_variant_id=opt(found.forced),
            holdouts_stale=found.stale,
        )

    def found(self, enrollment: Enrollment) -> Found:
        """An Enrollment by names, for readable failures."""
        return Found(
            self.name_of(enrollment.experiment_id),
            enrollment.status,
            self.name_of(enrollment.variant_id),
            self.name_of(enrollment.member_of),
            enrollment.created,
            enrollment.exposed,
            enrollment.profile is not None,
            self.name_of(enrollment.forced_variant_id),
            enrollment.holdouts_stale,
        )


class ScenarioStore(Protocol):
    """A store the scenarios run against: the fake, or PostgreSQL through AssignmentRepository."""

    can_race: bool  # runs two statements concurrently (False: one after the other)

    def seed(self, world: World) -> None: ...

    def enroll(self, request: EnrollRequest) -> Enrollment: ...

    def race(self, first: EnrollRequest, second: EnrollRequest) -> tuple[Enrollment, Enrollment]:
        """Run `first` in a transaction left open, `second` meanwhile (it waits on `first`'s rows),
        then commit `first`: what each found."""
        ...

    def rows(self, world: World) -> Rows: ...


def pairs(steps: tuple[Step, ...]) -> Iterator[tuple[Step, Step | None]]:
    """Each step with its rival, the next step if that one races it."""
    index = 0
    while index < len(steps):
        rival = steps[index + 1] if index + 1 < len(steps) else None
        if rival is not None and rival.while_open is not None:
            yield steps[index], rival
            index += 2
        else:
            yield steps[index], None
            index += 1


def play(scenario: Scenario, store: ScenarioStore) -> None:
    """Seed the rows, play each step, compare what was found, served and written."""
    world = World(scenario.given)
    store.seed(world)
    for number, (step, rival) in enumerate(pairs(scenario.steps), start=1):
        subject, request = _prepare(world, step, number)
        if rival is None:
            _check(world, step, subject, store.enroll(request), number)
            continue
        rival_subject, rival_request = _prepare(world, rival, number + 1)
        if store.can_race:
            won, lost = store.race(request, rival_request)
            _check(world, step, subject, won, number)
            assert rival.while_open is not None
            found = world.found(lost)
            assert found == rival.while_open, (
                f"step {number + 1} (step {number} open) found\n  {found}\nnot\n  {rival.while_open}"
            )
            retry = decide(replace(rival_subject, stored=lost))
            # The loser of a race finds nothing, so the pipeline proposes again and the service
            # runs the statement a second time, which reads the winner's rows.
            assert retry.proposal, f"step {number + 1}: the race's loser should be asked again, not {retry}"
        else:
            _check(world, step, subject, store.enroll(request), number)
        _check(world, rival, rival_subject, store.enroll(rival_request), number + 1)
    after = store.rows(world)
    assert after == scenario.after, f"the rows after:\n  {after}\nnot\n  {scenario.after}"


def _prepare(world: World, step: Step, number: int) -> tuple[Subject, EnrollRequest]:
    subject = world.subject(step.ask)
    first = decide(subject)
    proposed = world.name_of(first.variant.id) if first.proposal and first.variant else None
    assert proposed == step.proposes, f"step {number}: the cache's decision proposes {proposed}: {first}"
    return subject, world.request(step.ask, subject, first)


def _check(world: World, step: Step, subject: Subject, enrollment: Enrollment, number: int) -> None:
    found = world.found(enrollment)
    assert found == step.found, f"step {number}: the statement found\n  {found}\nnot\n  {step.found}"
    assert enrollment == world.enrollment(step.found), f"step {number}: the Enrollment itself"
    if step.served is None:
        assert enrollment.holdouts_stale, f"step {number}: undecided only when the holdouts were stale"
        return
    final = decide(replace(subject, stored=enrollment))
    variant = world.name_of(final.variant.id) if final.variant is not None else None
    served = (final.reason, final.stage, variant)
    expected = (step.served.reason, step.served.stage, step.served.variant)
    assert served == expected, f"step {number}: the pipeline serves {served}, not {expected}"
    if final.reason in (Reason.ASSIGNED, Reason.OVERRIDE):
        assert final.experiment is not None
        assert final.experiment.id == enrollment.experiment_id
