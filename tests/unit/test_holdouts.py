"""Holdouts without a database: the membership contract (golden vectors, properties, the proportions
of each group), the pipeline's holdout stage, the service's stale-cache reload, the create model,
and the results report."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from abtest.analysis.holdouts import GroupMetric, HoldoutStats, holdout_results
from abtest.contract.holdouts import holdout_bucket, holdout_group, holdout_size
from abtest.contract.namespaces import NAMESPACE_BUCKETS, namespace_bucket
from abtest.domain.assignment import Enrollment, LiveExperiment, Reason
from abtest.domain.decision import STAGES, Subject, decide
from abtest.domain.experiments import Status
from abtest.domain.holdouts import Holdout, HoldoutCreate, RunningHoldout, memberships
from abtest.domain.namespaces import Namespace
from abtest.domain.serving import AssignmentService
from tests.unit.fakes import NOW, FakeStore, make_experiment

stats: Any
try:
    from scipy import stats
except ImportError:  # test-only dependency
    stats = None
needs_scipy = pytest.mark.skipif(stats is None, reason="scipy is not installed (pip install scipy)")

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VECTORS: dict[str, Any] = json.loads((GOLDEN / "holdout_vectors.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]


def make_holdout(
    percent: float = 0.1, surfaces: list[str] | None = None, status: Status = Status.RUNNING
) -> Holdout:
    return Holdout(
        id=uuid.uuid4(),
        name="h",
        salt=str(uuid.uuid4()),
        percent=percent,
        surfaces=surfaces,
        all_surfaces=surfaces is None,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        started_at=NOW,
        completed_at=None,
    )


# ---------------------------------------------------------------------------------------------------
# The contract


def test_vector_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_holdout_vectors", GOLDEN / "make_holdout_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    on_disk = (GOLDEN / "holdout_vectors.json").read_text(encoding="utf-8")
    assert generator.render() == on_disk, "regenerate: python tests/golden/make_holdout_vectors.py"


def test_vector_file_covers_every_group_and_boundary() -> None:
    assert {c["expected_group"] for c in CASES} == {"holdout", "measurement", None}
    assert {c["expected_bucket"] - c["expected_size"] for c in CASES} >= {-1, 0}
    assert any(c["expected_bucket"] == 2 * c["expected_size"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_vector(case: dict[str, Any]) -> None:
    key = f"{case['holdout_salt']}:{case['user_id']}".encode()
    assert key.hex() == case["key_utf8_hex"]
    assert (
        holdout_bucket(case["holdout_salt"], case["user_id"])
        == case["hash"] % 10_000
        == case["expected_bucket"]
    )
    size = holdout_size(case["percent"])
    assert size == case["expected_size"]
    assert holdout_group(case["holdout_salt"], case["user_id"], size) == case["expected_group"]


@pytest.mark.parametrize(
    ("percent", "size"), [(0.0001, 1), (0.05, 500), (0.07, 700), (0.1, 1000), ("0.0125", 125), (0.029, 290)]
)
def test_size_is_exact(percent: Any, size: int) -> None:
    assert holdout_size(percent) == size


@pytest.mark.parametrize("percent", [0, -0.01, 0.1001, 0.2, 0.00005, 1e-9, float("nan"), float("inf"), "x"])
def test_size_refuses_what_is_not_whole_buckets_in_range(percent: Any) -> None:
    with pytest.raises(ValueError, match="percent"):
        holdout_size(percent)


@given(st.text(min_size=1, max_size=40), st.text(max_size=40), st.integers(1, 1000))
def test_groups_follow_the_bucket_and_are_disjoint(salt: str, user: str, size: int) -> None:
    try:
        bucket = holdout_bucket(salt, user)
    except ValueError:  # lone surrogates: refused like every hash of the contract
        return
    assert bucket == namespace_bucket(salt, user)
    group = holdout_group(salt, user, size)
    assert group == ("holdout" if bucket < size else "measurement" if bucket < 2 * size else None)


@given(st.text(min_size=1, max_size=20), st.integers(1, 999), st.integers(1, 999))
def test_growing_a_holdout_never_moves_a_held_out_user_to_measurement(user: str, a: int, b: int) -> None:
    try:
        small, large = holdout_group("salt", user, min(a, b)), holdout_group("salt", user, max(a, b))
    except ValueError:
        return
    if small == "holdout":
        assert large == "holdout"


@needs_scipy
@pytest.mark.parametrize("percent", [0.01, 0.05, 0.1])
def test_each_group_holds_percent_of_the_users(percent: float) -> None:
    # Chi-squared goodness of fit of (holdout, measurement, neither) against (p, p, 1 - 2p).
    n = 100_000
    size = holdout_size(percent)
    counts = {"holdout": 0, "measurement": 0, None: 0}
    for i in range(n):
        counts[holdout_group("3a0f7d8e-holdout", f"user-{i}", size)] += 1
    observed = [counts["holdout"], counts["measurement"], counts[None]]
    expected = [n * percent, n * percent, n * (1 - 2 * percent)]
    assert stats.chisquare(observed, expected).pvalue > 0.001


@needs_scipy
def test_the_proportion_test_detects_a_wrong_rule() -> None:
    # A check that cannot fail is worse than none: a rule that also holds out the measurement
    # group's buckets (bucket < 2 * size for a percent of 0.05) is caught.
    n = 20_000
    size = holdout_size(0.05)
    wrong = sum(1 for i in range(n) if holdout_bucket("3a0f7d8e-holdout", f"user-{i}") < 2 * size)
    assert stats.chisquare([wrong, n - wrong], [n * 0.05, n * 0.95]).pvalue < 0.001


def test_membership_is_independent_of_the_namespace_bucket() -> None:
    size = holdout_size(0.1)
    held = [f"u{i}" for i in range(20_000) if holdout_group("h-salt", f"u{i}", size) == "holdout"]
    in_first_half = sum(1 for u in held if namespace_bucket("ns-salt", u) < NAMESPACE_BUCKETS // 2)
    assert abs(in_first_half / len(held) - 0.5) < 0.05


# ---------------------------------------------------------------------------------------------------
# The create model


def test_exactly_one_of_surfaces_and_all() -> None:
    assert HoldoutCreate.model_validate({"name": "h", "percent": 0.05, "all": True}).surfaces is None
    assert HoldoutCreate.model_validate({"name": "h", "percent": 0.05, "surfaces": ["a"]}).all_ is None
    for body, field in (
        ({"name": "h", "percent": 0.05}, "surfaces"),
        ({"name": "h", "percent": 0.05, "all": True, "surfaces": ["a"]}, "surfaces"),
        ({"name": "h", "percent": 0.05, "all": False}, "all"),
        ({"name": "h", "percent": 0.05, "all_": True}, "all_"),
    ):
        with pytest.raises(ValidationError) as error:
            HoldoutCreate.model_validate(body)
        assert (field,) in [problem["loc"] for problem in error.value.errors()], body


# ---------------------------------------------------------------------------------------------------
# The pipeline stage


def namespace_of(*experiments: Any) -> tuple[Namespace, dict[uuid.UUID, LiveExperiment]]:
    running = {e.id: LiveExperiment.of(e) for e in experiments}
    owners = [experiments[0].id] * NAMESPACE_BUCKETS if experiments else []
    return Namespace("recommendations", "ns-salt", running, owners), running


def users_in(holdout: RunningHoldout, group: str | None, count: int = 5) -> list[str]:
    found = [f"user-{i}" for i in range(5_000) if holdout.group(f"user-{i}") == group]
    return found[:count]


def test_the_holdout_stage_comes_right_after_running() -> None:
    names = [name for name, _ in STAGES]
    assert names.index("holdout") > names.index("running")
    assert names.index("holdout") < names.index("stored_assignment") < names.index("namespace")


def test_held_out_users_get_the_holdout_reason_even_with_a_stored_assignment() -> None:
    experiment = make_experiment()
    ns, running = namespace_of(experiment)
    holdout = RunningHoldout.of(make_holdout())
    held, measured = users_in(holdout, "holdout"), users_in(holdout, "measurement")
    for user in held:
        decision = decide(Subject(user, ns, holdouts=(holdout,)))
        assert (decision.reason, decision.stage, decision.variant) == (Reason.HOLDOUT, "holdout", None)
        stored = Enrollment(experiment.id, Status.RUNNING, experiment.variants[0].id, member_of=experiment.id)
        assert decide(Subject(user, ns, holdouts=(holdout,), stored=stored)).reason == Reason.HOLDOUT
        asked = decide(Subject(user, ns, running[experiment.id], holdouts=(holdout,)))
        assert asked.reason == Reason.HOLDOUT
        assert decide(Subject(user, ns)).reason == Reason.ASSIGNED  # without the holdout
    for user in measured:
        assert decide(Subject(user, ns, holdouts=(holdout,))).reason == Reason.ASSIGNED


def test_not_running_experiments_exit_before_the_holdout() -> None:
    paused = make_experiment(status=Status.PAUSED)
    ns, _ = namespace_of(paused)
    holdout = RunningHoldout.of(make_holdout())
    user = users_in(holdout, "holdout")[0]
    assert decide(Subject(user, ns, holdouts=(holdout,))).reason == Reason.NOT_RUNNING


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30), st.sampled_from([0.01, 0.05, 0.1]))
def test_a_held_out_user_is_never_served_a_variant(user: str, percent: float) -> None:
    experiment = make_experiment()
    ns, _ = namespace_of(experiment)
    holdout = RunningHoldout.of(make_holdout(percent))
    try:
        group = holdout.group(user)
    except ValueError:
        return
    decision = decide(Subject(user, ns, holdouts=(holdout,)))
    if group == "holdout":
        assert decision.variant is None
        assert decision.reason == Reason.HOLDOUT
    else:
        assert decision == decide(Subject(user, ns))


def test_memberships_lists_both_groups_only() -> None:
    holdout = RunningHoldout.of(make_holdout())
    held, measured, neither = (users_in(holdout, g, 1)[0] for g in ("holdout", "measurement", None))
    assert memberships((holdout,), held) == ((holdout.id, "holdout"),)
    assert memberships((holdout,), measured) == ((holdout.id, "measurement"),)
    assert memberships((holdout,), neither) == ()


# ---------------------------------------------------------------------------------------------------
# The service over the in-memory store


def service(store: FakeStore) -> AssignmentService:
    return AssignmentService(store, store, experiment_ttl=3600, catalog_ttl=3600)


def test_service_reloads_once_when_the_statement_reports_a_stale_cache() -> None:
    store = FakeStore()
    experiment = store.add(make_experiment())
    serve = service(store)
    holdout = make_holdout(surfaces=["recommendations"], status=Status.DRAFT)
    store.holdouts.append(holdout)
    user = users_in(RunningHoldout.of(holdout), "holdout", 1)[0]
    assert serve.recommendations("warm", 1, surface="recommendations").assignment is not None
    store.holdouts[0] = holdout.model_copy(update={"status": Status.RUNNING})
    store.calls.clear()
    result = serve.assign(experiment.id, user)
    assert result.reason == Reason.HOLDOUT
    assert result.variant is None
    assert store.calls.count("enroll") == 2
    assert store.calls.count("serving_holdouts") == 1
    assert (experiment.id, user) not in store.assignments
    assert store.holdout_members == {(holdout.id, user): "holdout"}
    store.calls.clear()
    assert serve.assign(experiment.id, user).reason == Reason.HOLDOUT
    assert store.calls == ["enroll"]


def test_held_out_users_are_not_exposed_and_other_surfaces_are_untouched() -> None:
    store = FakeStore()
    recs = store.add(make_experiment())
    checkout = store.add(make_experiment("c", surface="checkout"))
    store.holdouts.append(make_holdout(surfaces=["checkout"]))
    serve = service(store)
    user = users_in(RunningHoldout.of(store.holdouts[0]), "holdout", 1)[0]
    assert serve.assign(recs.id, user).reason == Reason.ASSIGNED
    exposures = store.exposures
    assert serve.assign(checkout.id, user).reason == Reason.HOLDOUT
    assert store.exposures == exposures


# ---------------------------------------------------------------------------------------------------
# The results report


def test_results_put_the_holdout_first_and_check_srm_at_half() -> None:
    holdout = make_holdout()
    data = HoldoutStats(
        holdout,
        {"holdout": 1000, "measurement": 1200},
        {
            "purchase": {
                "holdout": GroupMetric(100, 150.0, 400.0),
                "measurement": GroupMetric(150, 240.0, 700.0),
            }
        },
    )
    report = holdout_results(data)
    assert [(g.name, g.role, g.users) for g in report.groups] == [
        ("holdout", "control", 1000),
        ("measurement", "treatment", 1200),
    ]
    assert report.srm.flag
    assert report.srm.p_value is not None
    assert report.srm.p_value < 0.001
    comparison = report.metrics["purchase"].conversion.comparisons[0]
    assert comparison.absolute.estimate == pytest.approx(150 / 1200 - 100 / 1000)
    value = report.metrics["purchase"].value.comparisons[0]
    assert value.absolute.estimate == pytest.approx(240 / 1200 - 150 / 1000)


def test_results_cap_the_metric_names() -> None:
    metrics = {f"m{i:03d}": {"holdout": GroupMetric(1, 1.0, 1.0)} for i in range(101)}
    report = holdout_results(HoldoutStats(make_holdout(), {"holdout": 10, "measurement": 10}, metrics))
    assert len(report.metrics) == 100
    assert report.metrics_truncated
    assert report.computed_at <= datetime.now(UTC)
