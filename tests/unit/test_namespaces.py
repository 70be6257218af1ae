"""Namespaces: the bucket contract (golden vectors), allocation policy, and the properties the issue
asks for (siblings never share a user; membership independent of the variant and of other namespaces;
observed shares match allocations; growing a share never moves a member). No sockets, no database."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.contract.bucketing import bucket_for, unit_interval
from abtest.contract.namespaces import NAMESPACE_BUCKETS, bucket_ranges, buckets_in, namespace_bucket
from abtest.domain.assignment import Reason
from abtest.domain.experiments import Status
from abtest.domain.namespaces import NamespaceFull, buckets_for_share, choose_buckets
from abtest.domain.serving import AssignmentService
from tests.unit.fakes import FakeStore, make_experiment

stats: Any
try:
    from scipy import stats
except ImportError:  # test-only dependency
    stats = None
needs_scipy = pytest.mark.skipif(stats is None, reason="scipy is not installed (pip install scipy)")

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VECTORS: dict[str, Any] = json.loads((GOLDEN / "namespace_vectors.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
ALPHA = 0.001
N_USERS = 100_000
USERS = [f"user-{n}" for n in range(N_USERS)]


# ---------------------------------------------------------------------------------------------------
# Golden vectors: the whole decision for a new user


def test_vector_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", GOLDEN / "make_assignment_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    on_disk = (GOLDEN / "namespace_vectors.json").read_text(encoding="utf-8")
    assert generator.render_namespaces() == on_disk, (
        "regenerate: python tests/golden/make_assignment_vectors.py"
    )


def test_vector_file_covers_every_outcome() -> None:
    outcomes = {(c["expected_experiment"], c["expected_variant_index"]) for c in CASES}
    assert (None, None) in outcomes  # a free bucket
    assert any(e is not None and v is None for e, v in outcomes)  # owner's traffic excludes
    assert len({e for e, _ in outcomes}) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_vector(case: dict[str, Any]) -> None:
    key = f"{case['namespace_salt']}:{case['user_id']}".encode()
    assert key.hex() == case["key_utf8_hex"]
    bucket = namespace_bucket(case["namespace_salt"], case["user_id"])
    assert bucket == case["hash"] % NAMESPACE_BUCKETS == case["expected_bucket"]
    owner = next((e for e in case["experiments"] if bucket in buckets_in(map(tuple, e["buckets"]))), None)
    assert (owner["name"] if owner else None) == case["expected_experiment"]
    variant = None
    if owner is not None:
        variant = bucket_for(case["user_id"], owner["salt"], owner["weights"], owner["traffic_allocation"])
    assert variant == case["expected_variant_index"]


def test_bucket_is_the_hash_modulo_10000() -> None:
    assert namespace_bucket("ns", "u") == int(unit_interval("ns", "u") * 2**32) % 10_000
    with pytest.raises(ValueError, match="salt"):
        namespace_bucket("", "u")


# ---------------------------------------------------------------------------------------------------
# Ranges and allocation policy


@given(st.sets(st.integers(0, NAMESPACE_BUCKETS - 1), max_size=300))
def test_ranges_round_trip(buckets: set[int]) -> None:
    ranges = bucket_ranges(buckets)
    assert buckets_in(ranges) == sorted(buckets)
    assert all(start < end for start, end in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), "merged and disjoint"


def test_share_to_buckets() -> None:
    assert buckets_for_share(1.0) == 10_000
    assert buckets_for_share(0.5) == 5_000
    assert buckets_for_share(0.0001) == 1
    assert buckets_for_share(1 / 3) == 3_333


def test_choose_prefers_never_used_buckets_and_is_deterministic() -> None:
    experiment_id = uuid.uuid4()
    never_used, released = list(range(0, 100)), list(range(100, 200))
    chosen = choose_buckets(experiment_id, 150, never_used, released)
    assert set(range(100)) <= set(chosen)
    assert len(set(chosen)) == 150
    assert chosen == choose_buckets(experiment_id, 150, reversed(never_used), reversed(released))
    assert choose_buckets(uuid.uuid4(), 50, never_used, []) != choose_buckets(
        experiment_id, 50, never_used, []
    )


@needs_scipy
def test_chosen_buckets_are_a_uniform_sample() -> None:
    chosen = choose_buckets(uuid.uuid4(), 5_000, range(NAMESPACE_BUCKETS), [])
    deciles = Counter(bucket // 1_000 for bucket in chosen)
    assert stats.chisquare([deciles[d] for d in range(10)]).pvalue > ALPHA


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 0.6), st.floats(0.0, 0.4), st.floats(0.0, 0.3))
def test_growing_a_share_never_moves_a_bucket_or_a_member(
    first: float, growth: float, sibling: float
) -> None:
    store = FakeStore()
    grower = store.add(make_experiment("grower", share=first))
    store.add(make_experiment("sibling", share=max(sibling, 0.0001)))
    before = store.buckets_of(grower.id)
    serve = AssignmentService(store, store, experiment_ttl=60, catalog_ttl=60)
    members = {u for u in USERS[:200] if serve.assign(grower.id, u).variant is not None}
    try:
        store.take(grower.id, min(1.0, first + growth))
    except NamespaceFull:
        return
    serve._view.invalidate()
    assert before <= store.buckets_of(grower.id)
    for user in members:
        assert serve.assign(grower.id, user).reason == Reason.ASSIGNED


def test_a_share_larger_than_the_free_space_is_refused_naming_it() -> None:
    store = FakeStore()
    store.add(make_experiment("a", share=0.5))
    store.add(make_experiment("b", share=0.3))
    third = store.add(make_experiment("c", status=Status.DRAFT, share=0.25))
    with pytest.raises(NamespaceFull) as refused:
        store.set_status(third.id, Status.RUNNING)
    assert refused.value.details["free_share"] == pytest.approx(0.2)
    assert "free share is 0.2" in refused.value.message
    assert refused.value.field == "namespace_share"


# ---------------------------------------------------------------------------------------------------
# Siblings, pause/resume/complete: the service over the in-memory store

OPS = st.lists(
    st.tuples(
        st.sampled_from(["recommend", "assign", "pause", "resume", "complete", "start"]),
        st.integers(0, 2),
        st.booleans(),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_siblings_never_share_a_user_and_paused_members_get_defaults(
    ops: list[tuple[str, int, bool]],
) -> None:
    """Any sequence of start, pause, resume, complete and requests, with the container's cache
    refreshed after a change or left stale (the statement re-checks what the cache believes)."""
    store = FakeStore()
    experiments = [
        store.add(make_experiment("a", share=0.4)),
        store.add(make_experiment("b", share=0.4, traffic=0.7)),
        store.add(make_experiment("c", status=Status.DRAFT, share=0.3)),
    ]
    serve = AssignmentService(store, store, experiment_ttl=60, catalog_ttl=60)
    users = [f"user-{n}" for n in range(30)]
    for op, index, refresh in ops:
        if refresh:
            serve._view.invalidate()
        experiment = store.get(experiments[index].id)
        if op == "recommend":
            for user in users:
                result = serve.recommendations(user, 1, surface="recommendations")
                assert result.assignment is not None
                member = store.members.get(("recommendations", user))
                if member is not None and store.get(member).status == Status.PAUSED:
                    assert (result.assignment.variant, result.assignment.reason) == (None, Reason.NOT_RUNNING)
        elif op == "assign":
            for user in users:
                serve.assign(experiment.id, user)
        elif op == "start" and experiment.status == Status.DRAFT:
            with contextlib.suppress(NamespaceFull):
                store.set_status(experiment.id, Status.RUNNING)
        elif op == "pause" and experiment.status == Status.RUNNING:
            store.set_status(experiment.id, Status.PAUSED)
        elif op == "resume" and experiment.status == Status.PAUSED:
            store.set_status(experiment.id, Status.RUNNING)
        elif op == "complete" and experiment.status in (Status.RUNNING, Status.PAUSED):
            store.set_status(experiment.id, Status.COMPLETED)
        # Invariant: among experiments that are not completed, no user is assigned in two.
        live = {e.id for e in store.experiments if e.status != Status.COMPLETED}
        per_user = Counter(user for (experiment_id, user) in store.assignments if experiment_id in live)
        assert max(per_user.values(), default=0) <= 1
        # Buckets of siblings are disjoint by construction; each owner is live.
        owners = {o for o in store.owners.get("recommendations", []) if o is not None}
        assert owners <= live


# ---------------------------------------------------------------------------------------------------
# Statistics over 100k users (deterministic ids)


def owner_of(buckets: dict[str, set[int]], salt: str, user: str) -> str:
    bucket = namespace_bucket(salt, user)
    return next((name for name, owned in buckets.items() if bucket in owned), "free")


@needs_scipy
def test_observed_shares_match_allocations() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    owned_a = set(choose_buckets(a, 5_000, range(NAMESPACE_BUCKETS), []))
    owned_b = set(choose_buckets(b, 3_000, set(range(NAMESPACE_BUCKETS)) - owned_a, []))
    counts = Counter(owner_of({"a": owned_a, "b": owned_b}, "ns-salt", u) for u in USERS)
    observed = [counts["a"], counts["b"], counts["free"]]
    expected = [0.5 * N_USERS, 0.3 * N_USERS, 0.2 * N_USERS]
    assert stats.chisquare(observed, f_exp=expected).pvalue > ALPHA
    # Negative control: the same test rejects a 0.52 / 0.28 split.
    skewed = [0.52 * N_USERS, 0.28 * N_USERS, 0.2 * N_USERS]
    assert stats.chisquare(observed, f_exp=skewed).pvalue < ALPHA


@needs_scipy
def test_membership_is_independent_of_the_variant_and_of_other_namespaces() -> None:
    owned = {"a": set(range(0, 5_000)), "b": set(range(5_000, 8_000))}
    table: Counter[tuple[str, int | None]] = Counter()
    other: Counter[tuple[str, str]] = Counter()
    for user in USERS:
        membership = owner_of(owned, "ns-recommendations", user)
        table[membership, bucket_for(user, "exp-salt", [0.5, 0.5], 1.0)] += 1
        other[membership, owner_of(owned, "ns-checkout", user)] += 1
    rows = ["a", "b", "free"]
    joint = [[table[r, v] for v in (0, 1)] for r in rows]
    assert stats.chi2_contingency(joint).pvalue > ALPHA
    crossed = [[other[r, c] for c in rows] for r in rows]
    assert stats.chi2_contingency(crossed).pvalue > ALPHA
    # Negative control: buckets cut from the variant's own u (same salt, high bits) are tied to it.
    tied: Counter[tuple[bool, int | None]] = Counter()
    for user in USERS[:2_000]:
        in_a = int(unit_interval("exp-salt", user) * NAMESPACE_BUCKETS) < 5_000
        tied[in_a, bucket_for(user, "exp-salt", [0.5, 0.5], 1.0)] += 1
    assert stats.chi2_contingency([[tied[r, v] for v in (0, 1)] for r in (True, False)]).pvalue < ALPHA
