"""The enrollment rule as one table: rows given, a request, what the enrollment statement finds and
writes, and what the decision pipeline then serves.

The rule lives in three places: the decision pipeline (abtest.domain.decision), the enrollment
statement (`_ENROLL` in abtest.storage.assignments, run as the routine `abtest_enroll`) and its
in-memory mirror (`FakeStore.enroll` in tests/unit/fakes.py). Every scenario below runs against the
fake (tests/unit/test_enrollment_scenarios.py) and against the real statement on PostgreSQL
(tests/integration/test_enrollment_scenarios.py), through the same runner
(tests/scenarios/enrollment_runner.py), so a change to one copy that is not mirrored in the others
fails. Each step of a scenario:

1. builds the request as the service does: the pipeline decides with what the container's cache
   knows (`proposes`: the variant it proposes to store, or None when it only reads);
2. runs the statement (or the fake) with it and compares what it found (`found`);
3. decides again with what the statement found, as the service does, and compares what is served
   (`served`; None when the statement said the cache's holdouts were stale: the service reloads and
   asks again, which is the next step).

A step with `while_open` is a race: on PostgreSQL it runs while the previous step's statement sits in
a transaction not yet committed (`while_open` is what it finds then), and once more after (`found`,
the service's retry); the fake cannot interleave, so it runs the step once, after the previous one,
and must find `found`. The rows after all steps are compared too (`after`).

One user (USER) throughout. Every experiment has the variants control (weight 1) and treatment
(weight 0), so the contract always proposes control and a stored treatment shows stickiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from abtest.contract.holdouts import HoldoutGroup
from abtest.domain.assignment import Reason
from abtest.domain.experiments import Status

USER = "scenario-user"
SURFACE = "recommendations"
OTHER_SURFACE = "search"
FRANCE: Mapping[str, Any] = {"country": {"$in": ["FR"]}}
FIRST = "<first>"  # Ask.owner: the first experiment of the surface the cache holds

RUNNING, PAUSED, COMPLETED = Status.RUNNING, Status.PAUSED, Status.COMPLETED


@dataclass(frozen=True)
class Exp:
    """An experiment row (with its variants `control` and `treatment`)."""

    key: str
    status: Status = RUNNING
    surface: str = SURFACE
    traffic: float = 1.0
    targeting: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hold:
    """A holdout row; its salt is chosen so that USER falls in `group`."""

    key: str
    group: HoldoutGroup | None
    status: Status = RUNNING
    surfaces: tuple[str, ...] | None = None  # None: every surface


@dataclass(frozen=True)
class Given:
    """The rows in the database (and in the fake) before the first step."""

    experiments: tuple[Exp, ...] = ()
    assignments: tuple[str, ...] = ()  # "A.treatment": USER's stored assignment in A
    members: tuple[str, ...] = ()  # "A": USER's namespace membership on A's surface, in A
    overrides: tuple[str, ...] = ()  # "A.treatment": an override of USER, oldest first
    holdouts: tuple[Hold, ...] = ()
    holdout_members: tuple[tuple[str, HoldoutGroup], ...] = ()  # already recorded: (holdout, group)
    profile: bool = False  # USER has a profile vector


@dataclass(frozen=True)
class Ask:
    """One request, and what the asking container's cache believes where it differs from the rows."""

    experiment: str | None = None  # POST /assignments for this experiment; None: /recommendations
    surface: str = SURFACE  # /recommendations only (/assignments uses the experiment's surface)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    record_exposure: bool = True
    with_profile: bool = False
    cached: tuple[tuple[str, Status], ...] = ()  # experiment statuses as the cache has them
    owner: str | None = FIRST  # the experiment owning USER's namespace bucket (None: unowned)
    cached_holdouts: tuple[str, ...] | None = None  # running holdouts the cache knows (None: as given)


@dataclass(frozen=True)
class Found:
    """The statement's one row (an Enrollment), by names."""

    experiment: str | None = None
    status: Status | None = None
    variant: str | None = None
    member_of: str | None = None
    created: bool = False
    exposed: bool = False
    profile: bool = False
    forced: str | None = None
    stale: bool = False


@dataclass(frozen=True)
class Served:
    """The pipeline's final decision: its reason, the stage that decided, the variant served."""

    reason: Reason
    stage: str
    variant: str | None = None


@dataclass(frozen=True)
class Step:
    ask: Ask
    proposes: str | None  # the variant the first decision proposes (None: the statement only reads)
    found: Found
    served: Served | None  # None: stale holdouts, the service reloads and asks again
    while_open: Found | None = None  # race (PostgreSQL): found while the previous step is uncommitted


@dataclass(frozen=True)
class Rows:
    """USER's rows after all steps."""

    assignments: frozenset[str] = frozenset()
    members: frozenset[str] = frozenset()
    exposures: int = 0
    forced_exposures: int = 0
    holdout_members: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Scenario:
    name: str
    why: str
    given: Given
    steps: tuple[Step, ...]
    after: Rows


def rows(
    assignments: tuple[str, ...] = (),
    members: tuple[str, ...] = (),
    exposures: int = 0,
    forced_exposures: int = 0,
    holdout_members: tuple[tuple[str, str], ...] = (),
) -> Rows:
    return Rows(
        frozenset(assignments), frozenset(members), exposures, forced_exposures, frozenset(holdout_members)
    )


A, B, C, D = Exp("A"), Exp("B"), Exp("C"), Exp("D", surface=OTHER_SURFACE)
ASSIGNED, NOT_RUNNING, OVERRIDE, HOLDOUT = (
    Reason.ASSIGNED,
    Reason.NOT_RUNNING,
    Reason.OVERRIDE,
    Reason.HOLDOUT,
)
STORED = Served(ASSIGNED, "stored_assignment", "A.control")  # the usual happy ending
NEW_IN_A = Found("A", RUNNING, "A.control", "A", created=True, exposed=True)
READ_NOTHING_IN_A = Found("A", RUNNING)
ENROLLED_IN_A = rows(("A.control",), ("A",), exposures=1)

SCENARIOS: tuple[Scenario, ...] = (
    # -- the variant stage: a new user is enrolled, stored and exposed at once
    Scenario(
        "new_user_by_assignments",
        "POST /assignments: the proposal is stored with the membership, and exposed",
        Given((A,)),
        (Step(Ask("A"), "A.control", NEW_IN_A, STORED),),
        ENROLLED_IN_A,
    ),
    Scenario(
        "new_user_on_surface",
        "/recommendations: the bucket's owner proposes, the statement stores and exposes",
        Given((A,)),
        (Step(Ask(), "A.control", NEW_IN_A, STORED),),
        ENROLLED_IN_A,
    ),
    Scenario(
        "exposure_not_asked",
        "record_exposure false: enrolled, not exposed",
        Given((A,)),
        (
            Step(
                Ask("A", record_exposure=False),
                "A.control",
                Found("A", RUNNING, "A.control", "A", True),
                STORED,
            ),
        ),
        rows(("A.control",), ("A",)),
    ),
    Scenario(
        "profile_read_when_enrolled",
        "with_profile: the profile comes back with the assignment",
        Given((A,), profile=True),
        (
            Step(
                Ask(with_profile=True),
                "A.control",
                Found("A", RUNNING, "A.control", "A", True, True, profile=True),
                STORED,
            ),
        ),
        ENROLLED_IN_A,
    ),
    Scenario(
        "membership_on_other_surface_does_not_bind",
        "a namespace membership binds on its own surface only",
        Given((A, D), assignments=("D.control",), members=("D",)),
        (Step(Ask("A"), "A.control", NEW_IN_A, STORED),),
        rows(("D.control", "A.control"), ("D", "A"), exposures=1),
    ),
    # -- the stored assignment wins (sticky), whatever the cache would propose
    Scenario(
        "stored_assignment_by_assignments",
        "a stored assignment is served and exposed; the proposal is ignored",
        Given((A,), assignments=("A.treatment",), members=("A",)),
        (
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, "A.treatment", "A", exposed=True),
                Served(ASSIGNED, "stored_assignment", "A.treatment"),
            ),
        ),
        rows(("A.treatment",), ("A",), exposures=1),
    ),
    Scenario(
        "stored_assignment_on_surface",
        "on a surface the membership leads to the stored assignment",
        Given((A,), assignments=("A.treatment",), members=("A",), profile=True),
        (
            Step(
                Ask(with_profile=True),
                "A.control",
                Found("A", RUNNING, "A.treatment", "A", exposed=True, profile=True),
                Served(ASSIGNED, "stored_assignment", "A.treatment"),
            ),
        ),
        rows(("A.treatment",), ("A",), exposures=1),
    ),
    Scenario(
        "membership_beats_bucket_owner",
        "a member of B is served B on the surface, though the cache says A owns the bucket",
        Given((A, B), assignments=("B.treatment",), members=("B",)),
        (
            Step(
                Ask(owner="A"),
                "A.control",
                Found("B", RUNNING, "B.treatment", "B", exposed=True),
                Served(ASSIGNED, "stored_assignment", "B.treatment"),
            ),
        ),
        rows(("B.treatment",), ("B",), exposures=1),
    ),
    Scenario(
        "stored_assignment_outlives_targeting",
        "targeting is checked at enrollment only: a stored assignment is served and exposed",
        Given((Exp("A", targeting=FRANCE),), assignments=("A.treatment",), members=("A",)),
        (
            Step(
                Ask("A", attributes={"country": "DE"}),
                None,
                Found("A", RUNNING, "A.treatment", "A", exposed=True),
                Served(ASSIGNED, "stored_assignment", "A.treatment"),
            ),
        ),
        rows(("A.treatment",), ("A",), exposures=1),
    ),
    Scenario(
        "stored_assignment_outlives_traffic",
        "traffic lowered to 0 after enrollment: the cache excludes, the stored variant is served",
        Given((Exp("A", traffic=0.0),), assignments=("A.control",), members=("A",)),
        (
            Step(
                Ask(),
                None,
                Found("A", RUNNING, "A.control", "A", exposed=True),
                Served(ASSIGNED, "stored_assignment", "A.control"),
            ),
        ),
        rows(("A.control",), ("A",), exposures=1),
    ),
    # -- experiment stage: nothing to decide about
    Scenario(
        "no_experiment_on_surface",
        "nothing running or paused on the surface: the statement reads nothing",
        Given((D,)),
        (Step(Ask(), None, Found(), Served(Reason.NO_EXPERIMENT, "experiment")),),
        rows(),
    ),
    Scenario(
        "bucket_unowned_on_surface",
        "the user's bucket belongs to no experiment: not in any share",
        Given((A,), profile=True),
        (Step(Ask(owner=None, with_profile=True), None, Found(), Served(Reason.NOT_IN_SHARE, "experiment")),),
        rows(),
    ),
    # -- running stage: paused and completed experiments never enroll nor expose
    Scenario(
        "paused_experiment_reads_only",
        "paused: the stored variant is found but not served nor exposed",
        Given((Exp("A", PAUSED),), assignments=("A.treatment",), members=("A",)),
        (
            Step(
                Ask("A"),
                None,
                Found("A", PAUSED, "A.treatment", "A"),
                Served(NOT_RUNNING, "running"),
            ),
        ),
        rows(("A.treatment",), ("A",)),
    ),
    Scenario(
        "paused_member_on_surface",
        "a member of a paused experiment is decided about in it: not running, not exposed",
        Given((Exp("A", PAUSED), B), assignments=("A.treatment",), members=("A",)),
        (
            Step(
                Ask(owner="B"),
                "B.control",
                Found("A", PAUSED, "A.treatment", "A"),
                Served(NOT_RUNNING, "running"),
            ),
        ),
        rows(("A.treatment",), ("A",)),
    ),
    Scenario(
        "paused_since_cache_load",
        "the cache says running and proposes; the database's status wins: nothing written",
        Given((Exp("A", PAUSED),)),
        (
            Step(
                Ask("A", cached=(("A", RUNNING),)),
                "A.control",
                Found("A", PAUSED),
                Served(NOT_RUNNING, "running"),
            ),
        ),
        rows(),
    ),
    Scenario(
        "completed_since_cache_load",
        "completed after the cache was loaded: nothing written, not running",
        Given((Exp("A", COMPLETED),)),
        (
            Step(
                Ask("A", cached=(("A", RUNNING),)),
                "A.control",
                Found("A", COMPLETED),
                Served(NOT_RUNNING, "running"),
            ),
        ),
        rows(),
    ),
    # -- namespace stage: one experiment per user and namespace
    Scenario(
        "asked_outside_the_share",
        "/assignments for A while the user's bucket is B's: read only, not in A's share",
        Given((A, B)),
        (Step(Ask("A", owner="B"), None, READ_NOTHING_IN_A, Served(Reason.NOT_IN_SHARE, "namespace")),),
        rows(),
    ),
    Scenario(
        "member_of_a_sibling",
        "a live membership in B keeps the user out of A, even when the cache proposes A",
        Given((A, B), assignments=("B.control",), members=("B",)),
        (
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, member_of="B"),
                Served(Reason.IN_OTHER_EXPERIMENT, "namespace"),
            ),
        ),
        rows(("B.control",), ("B",)),
    ),
    Scenario(
        "completed_membership_is_taken_over_on_surface",
        "a membership of a completed experiment no longer binds: the new one replaces it",
        Given((A, Exp("C", COMPLETED)), assignments=("C.treatment",), members=("C",)),
        (Step(Ask(), "A.control", NEW_IN_A, STORED),),
        rows(("C.treatment", "A.control"), ("A",), exposures=1),
    ),
    Scenario(
        "completed_membership_is_taken_over_by_assignments",
        "the same through POST /assignments",
        Given((A, Exp("C", COMPLETED)), assignments=("C.treatment",), members=("C",)),
        (Step(Ask("A"), "A.control", NEW_IN_A, STORED),),
        rows(("C.treatment", "A.control"), ("A",), exposures=1),
    ),
    Scenario(
        "membership_without_assignment_stores_nothing",
        "a live membership in A without an assignment there (the statement never leaves one): the "
        "membership insert meets it and changes nothing, so no assignment is stored either",
        Given((A,), members=("A",)),
        (
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, member_of="A"),
                Served(ASSIGNED, "variant", "A.control"),  # still a proposal: the service gives up
            ),
        ),
        rows(members=("A",)),
    ),
    # -- targeting and traffic stages: read only
    Scenario(
        "targeting_not_met",
        "attributes that do not match: the statement only reads",
        Given((Exp("A", targeting=FRANCE),)),
        (
            Step(
                Ask("A", attributes={"country": "DE"}),
                None,
                READ_NOTHING_IN_A,
                Served(Reason.TARGETING_NOT_MET, "targeting"),
            ),
        ),
        rows(),
    ),
    Scenario(
        "excluded_by_traffic",
        "outside the traffic allocation: read only, no profile",
        Given((Exp("A", traffic=0.0),), profile=True),
        (
            Step(
                Ask(with_profile=True),
                None,
                READ_NOTHING_IN_A,
                Served(Reason.EXCLUDED_BY_TRAFFIC, "traffic"),
            ),
        ),
        rows(),
    ),
    # -- override stage: forced users are served the override, never stored, exposed apart
    Scenario(
        "override_by_assignments",
        "an override is served and its exposure is a forced one; nothing is stored",
        Given((A,), overrides=("A.treatment",), profile=True),
        (
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, exposed=True, forced="A.treatment"),
                Served(OVERRIDE, "override", "A.treatment"),
            ),
        ),
        rows(forced_exposures=1),
    ),
    Scenario(
        "override_beats_stored_assignment",
        "the override comes before the stored assignment, which is kept",
        Given((A,), assignments=("A.control",), members=("A",), overrides=("A.treatment",), profile=True),
        (
            Step(
                Ask(with_profile=True),
                "A.control",
                Found("A", RUNNING, "A.control", "A", exposed=True, profile=True, forced="A.treatment"),
                Served(OVERRIDE, "override", "A.treatment"),
            ),
        ),
        rows(("A.control",), ("A",), forced_exposures=1),
    ),
    Scenario(
        "oldest_override_on_surface",
        "on a surface the oldest override of a running experiment decides which experiment",
        Given((A, B), overrides=("B.treatment", "A.treatment"), profile=True),
        (
            Step(
                Ask(owner="A", with_profile=True),
                "A.control",
                Found("B", RUNNING, exposed=True, profile=True, forced="B.treatment"),
                Served(OVERRIDE, "override", "B.treatment"),
            ),
        ),
        rows(forced_exposures=1),
    ),
    Scenario(
        "override_beats_sibling_membership",
        "the override stage comes before the namespace stage: a member of B is forced in A",
        Given((A, B), assignments=("B.control",), members=("B",), overrides=("A.treatment",)),
        (
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, member_of="B", exposed=True, forced="A.treatment"),
                Served(OVERRIDE, "override", "A.treatment"),
            ),
        ),
        rows(("B.control",), ("B",), forced_exposures=1),
    ),
    Scenario(
        "override_of_paused_experiment_ignored_on_surface",
        "on a surface only running experiments' overrides count: A enrolls as usual",
        Given((A, Exp("B", PAUSED), D), overrides=("B.treatment", "D.treatment")),
        (Step(Ask(), "A.control", NEW_IN_A, STORED),),
        ENROLLED_IN_A,
    ),
    Scenario(
        "override_of_paused_experiment_by_assignments",
        "asked for by id, a paused experiment's override is found but not served nor exposed",
        Given((Exp("A", PAUSED),), overrides=("A.treatment",)),
        (Step(Ask("A"), None, Found("A", PAUSED, forced="A.treatment"), Served(NOT_RUNNING, "running")),),
        rows(),
    ),
    Scenario(
        "override_served_to_held_out_user",
        "the override stage comes before the holdout stage; its forced exposure is kept apart",
        Given((A,), overrides=("A.treatment",), holdouts=(Hold("H", "holdout"),)),
        (
            Step(
                Ask("A"),
                None,
                Found("A", RUNNING, exposed=True, forced="A.treatment"),
                Served(OVERRIDE, "override", "A.treatment"),
            ),
        ),
        rows(forced_exposures=1, holdout_members=(("H", "holdout"),)),
    ),
    # -- holdout stage: a held-out user is never enrolled nor exposed
    Scenario(
        "held_out_user_not_enrolled",
        "held out: read only, the membership of the holdout is recorded",
        Given((A,), holdouts=(Hold("H", "holdout"),)),
        (Step(Ask("A"), None, READ_NOTHING_IN_A, Served(HOLDOUT, "holdout")),),
        rows(holdout_members=(("H", "holdout"),)),
    ),
    Scenario(
        "held_out_user_with_assignment_not_exposed",
        "enrolled before the holdout started: the assignment is found, not exposed, not served",
        Given(
            (A,),
            assignments=("A.treatment",),
            members=("A",),
            holdouts=(Hold("H", "holdout"),),
            holdout_members=(("H", "holdout"),),
        ),
        (Step(Ask(), None, Found("A", RUNNING, "A.treatment", "A"), Served(HOLDOUT, "holdout")),),
        rows(("A.treatment",), ("A",), holdout_members=(("H", "holdout"),)),
    ),
    Scenario(
        "measurement_group_enrolled",
        "the measurement group gets normal traffic; its membership is recorded",
        Given((A,), holdouts=(Hold("H", "measurement"),)),
        (Step(Ask(), "A.control", NEW_IN_A, STORED),),
        rows(("A.control",), ("A",), exposures=1, holdout_members=(("H", "measurement"),)),
    ),
    Scenario(
        "holdout_of_other_surface",
        "a holdout covering another surface neither holds out nor makes the cache stale",
        Given((A,), holdouts=(Hold("H", "holdout", surfaces=(OTHER_SURFACE,)),)),
        (Step(Ask(), "A.control", NEW_IN_A, STORED),),
        ENROLLED_IN_A,
    ),
    Scenario(
        "holdout_started_since_cache_load",
        "the cache knows no holdout: nothing is written; reloaded, the user is held out",
        Given((A,), holdouts=(Hold("H", "holdout"),)),
        (
            Step(Ask("A", cached_holdouts=()), "A.control", Found("A", RUNNING, stale=True), None),
            Step(Ask("A"), None, READ_NOTHING_IN_A, Served(HOLDOUT, "holdout")),
        ),
        rows(holdout_members=(("H", "holdout"),)),
    ),
    Scenario(
        "holdout_paused_since_cache_load",
        "the cache holds a holdout no longer running: nothing (no member) is written; reloaded, enrolled",
        Given((A,), holdouts=(Hold("H", "holdout", PAUSED),)),
        (
            Step(Ask(cached_holdouts=("H",)), None, Found("A", RUNNING, stale=True), None),
            Step(Ask(), "A.control", NEW_IN_A, STORED),
        ),
        ENROLLED_IN_A,
    ),
    Scenario(
        "stale_holdouts_expose_nothing",
        "stale holdouts: a stored assignment is found but not exposed; reloaded, it is",
        Given((A,), assignments=("A.control",), members=("A",), holdouts=(Hold("H", "measurement"),)),
        (
            Step(
                Ask(cached_holdouts=()), "A.control", Found("A", RUNNING, "A.control", "A", stale=True), None
            ),
            Step(Ask(), "A.control", Found("A", RUNNING, "A.control", "A", exposed=True), STORED),
        ),
        rows(("A.control",), ("A",), exposures=1, holdout_members=(("H", "measurement"),)),
    ),
    Scenario(
        "stale_holdouts_write_no_forced_exposure",
        "stale holdouts stop the forced exposure too",
        Given((A,), overrides=("A.treatment",), holdouts=(Hold("H", "measurement"),)),
        (
            Step(
                Ask("A", cached_holdouts=()),
                "A.control",
                Found("A", RUNNING, forced="A.treatment", stale=True),
                None,
            ),
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, exposed=True, forced="A.treatment"),
                Served(OVERRIDE, "override", "A.treatment"),
            ),
        ),
        rows(forced_exposures=1, holdout_members=(("H", "measurement"),)),
    ),
    # -- races: two requests for one new user at once store exactly one assignment and membership
    Scenario(
        "two_assignments_at_once",
        "the loser's snapshot sees nothing and its inserts meet the winner's rows: it finds nothing; "
        "the service's retry reads the winner's assignment",
        Given((A,)),
        (
            Step(Ask("A"), "A.control", NEW_IN_A, STORED),
            Step(
                Ask("A"),
                "A.control",
                Found("A", RUNNING, "A.control", "A", exposed=True),
                STORED,
                while_open=READ_NOTHING_IN_A,
            ),
        ),
        rows(("A.control",), ("A",), exposures=2),
    ),
    Scenario(
        "surface_and_assignments_at_once",
        "/recommendations and POST /assignments racing for one new user: one membership, one assignment",
        Given((A,)),
        (
            Step(Ask(), "A.control", NEW_IN_A, STORED),
            Step(
                Ask("A", record_exposure=False),
                "A.control",
                Found("A", RUNNING, "A.control", "A"),
                STORED,
                while_open=READ_NOTHING_IN_A,
            ),
        ),
        rows(("A.control",), ("A",), exposures=1),
    ),
)
