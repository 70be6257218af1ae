"""abtest.contract.bucketing: golden vectors, properties, and the statistics of the split.

No sockets, no database. The statistical tests use fixed user ids, so they are deterministic; each
one is paired with a negative control showing the same check fails on a known-bad assignment.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.contract.bucketing import Allocation, bucket_for, unit_interval

stats: Any
try:
    from scipy import stats
except ImportError:  # test-only dependency: the statistical tests skip (and say so) without it
    stats = None
needs_scipy = pytest.mark.skipif(stats is None, reason="scipy is not installed (pip install scipy)")

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VECTORS: dict[str, Any] = json.loads((GOLDEN / "assignment_vectors.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = VECTORS["cases"]
INVALID_CASES: list[dict[str, Any]] = VECTORS["invalid_cases"]

ALPHA = 0.001  # significance level of the statistical tests
N_USERS = 100_000


def reference_bucket(user_id: str, salt: str, weights: Sequence[float], traffic: float) -> int | None:
    """The contract written out plainly, comparing exactly (as rationals) against float ranges."""
    h = mmh3.hash(f"{salt}:{user_id}".encode(), 0, signed=False)
    u = Fraction(h, 2**32)
    c = 0.0
    for i, w in enumerate(weights):
        if Fraction(c) <= u < Fraction(c + traffic * w):
            return i
        c += w
    return None


# ---------------------------------------------------------------------------------------------------
# Golden vectors


def test_vector_file_covers_the_contract() -> None:
    assert len(CASES) >= 60
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert any(not c["user_id"].isascii() for c in CASES)
    assert any(any(ord(ch) > 0xFFFF for ch in c["user_id"]) for c in CASES)  # beyond the BMP
    assert any(":" in c["salt"] for c in CASES)
    assert {0.0, 1.0} <= {c["traffic_allocation"] for c in CASES}
    assert {2, 3, 4, 5} <= {len(c["weights"]) for c in CASES}
    assert any(0.0 in c["weights"] for c in CASES)
    outcomes = {c["expected_variant_index"] for c in CASES}
    assert {None, 0, 1, 2, 3, 4} <= outcomes


def test_vector_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_assignment_vectors", GOLDEN / "make_assignment_vectors.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    on_disk = (GOLDEN / "assignment_vectors.json").read_text(encoding="utf-8")
    assert generator.render() == on_disk, "regenerate: python tests/golden/make_assignment_vectors.py"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_vector(case: dict[str, Any]) -> None:
    salt, user_id, weights, traffic = (
        case["salt"],
        case["user_id"],
        case["weights"],
        case["traffic_allocation"],
    )
    key = f"{salt}:{user_id}".encode()
    assert key.hex() == case["key_utf8_hex"]
    assert mmh3.hash(key, 0, False) == case["hash"]

    u = unit_interval(salt, user_id)
    assert u == float.fromhex(case["expected_u_hex"])
    assert u * 2**32 == case["hash"]

    assert bucket_for(user_id, salt, weights, traffic) == case["expected_variant_index"]
    assert Allocation(weights, traffic).variant_index(u) == case["expected_variant_index"]


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c["name"] for c in INVALID_CASES])
def test_invalid_vector_is_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"salt|weights|traffic_allocation"):
        bucket_for(case["user_id"], case["salt"], case["weights"], case["traffic_allocation"])


def test_salt_colon_ambiguity_is_documented() -> None:
    """The key is not injective across salts containing ':'; within one experiment it is."""
    assert unit_interval("exp:1", "u") == unit_interval("exp", "1:u")
    assert unit_interval("exp", "1:u") != unit_interval("exp", "1:v")


# ---------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("weights", "traffic", "message"),
    [
        ([0.5, math.nan], 1.0, r"weights\[1\] must be a non-negative number, got nan"),
        ([0.5, -0.0, -1e-300], 1.0, r"weights\[2\]"),
        ([math.inf, 0.0], 1.0, "sum to at most 1"),
        ([0.5, 0.5 + 1e-8], 1.0, "sum to at most 1"),
        ([0.5, 0.5], math.nan, r"traffic_allocation must be in \[0, 1\], got nan"),
        ([0.5, 0.5], 1.0000001, "traffic_allocation"),
        ((), 1.0, "at least one variant"),
    ],
)
def test_bad_configuration_raises_value_error(weights: Sequence[float], traffic: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bucket_for("user-1", "exp", weights, traffic)
    with pytest.raises(ValueError, match=message):
        Allocation(weights, traffic)


@pytest.mark.parametrize(
    "weights",
    [[0.1] * 10, [0.7, 0.2, 0.1], (1 / 3, 1 / 3, 1 / 3), [0.5, 0.5 + 1e-10], [1, 0], [0.0, 0.0]],
)
def test_weights_summing_to_one_within_tolerance_are_accepted(weights: Sequence[float]) -> None:
    assert bucket_for("user-1", "exp", weights, 1.0) == Allocation(weights, 1.0).variant_index(
        unit_interval("exp", "user-1")
    )


def test_empty_salt_is_rejected() -> None:
    with pytest.raises(ValueError, match="salt must be a non-empty string"):
        unit_interval("", "user-1")
    with pytest.raises(ValueError, match="salt must be a non-empty string"):
        bucket_for("user-1", "", [0.5, 0.5], 1.0)


@pytest.mark.parametrize("user_id", ["user-\ud800", "\udfff", "a\udc80b"])
def test_lone_surrogate_raises_value_error(user_id: str) -> None:
    # mmh3 5.x segfaults when given such a str directly; bucketing must encode first.
    with pytest.raises(ValueError, match="lone surrogates"):
        unit_interval("exp", user_id)
    with pytest.raises(ValueError, match="lone surrogates"):
        bucket_for(user_id, "exp", [0.5, 0.5], 1.0)


@pytest.mark.parametrize("user_id", [None, 42, b"user-1"])
def test_non_str_user_id_raises_type_error(user_id: Any) -> None:
    with pytest.raises(TypeError):
        unit_interval("exp", user_id)


def test_highest_possible_u_is_enrolled_in_the_last_variant() -> None:
    top = (2**32 - 1) / 2**32
    assert top < 1.0
    assert Allocation([0.5, 0.5], 1.0).variant_index(top) == 1
    assert Allocation([0.1] * 10, 1.0).variant_index(top) == 9  # the naive sum is 0.9999999999999999


# ---------------------------------------------------------------------------------------------------
# Properties

user_ids = st.text(max_size=40)  # hypothesis' default alphabet has no lone surrogates
salts = st.text(min_size=1, max_size=40)
traffics = st.floats(min_value=0.0, max_value=1.0)
units = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def weight_lists(draw: st.DrawFn, min_size: int = 1) -> list[float]:
    """Non-negative weights summing to 1 (up to rounding), as the API stores them."""
    raw = draw(st.lists(st.integers(0, 100), min_size=min_size, max_size=6).filter(lambda ws: sum(ws) > 0))
    total = sum(raw)
    return [r / total for r in raw]


@given(user_id=user_ids, salt=salts, weights=weight_lists(), traffic=traffics)
@settings(max_examples=300)
def test_deterministic_and_equal_to_reference(
    user_id: str, salt: str, weights: list[float], traffic: float
) -> None:
    first = bucket_for(user_id, salt, weights, traffic)
    assert bucket_for(user_id, salt, list(weights), traffic) == first
    assert unit_interval(salt, user_id) == unit_interval(salt, user_id)
    assert Allocation(weights, traffic).variant_index(unit_interval(salt, user_id)) == first
    assert reference_bucket(user_id, salt, weights, traffic) == first


@given(user_id=user_ids, salt=salts)
def test_u_is_in_unit_interval(user_id: str, salt: str) -> None:
    u = unit_interval(salt, user_id)
    assert 0.0 <= u < 1.0
    assert u * 2**32 == mmh3.hash(f"{salt}:{user_id}".encode(), 0, False)


@given(user_id=user_ids, salt=salts, weights=weight_lists(), t1=traffics, t2=traffics)
@settings(max_examples=300)
def test_raising_traffic_never_moves_an_enrolled_user(
    user_id: str, salt: str, weights: list[float], t1: float, t2: float
) -> None:
    low, high = sorted((t1, t2))
    before = bucket_for(user_id, salt, weights, low)
    if before is not None:
        assert bucket_for(user_id, salt, weights, high) == before


@given(u=units, weights=weight_lists(), t1=traffics, t2=traffics)
@settings(max_examples=500)
def test_raising_traffic_never_moves_any_point(u: float, weights: list[float], t1: float, t2: float) -> None:
    """Same property over every double u in [0, 1), not only those a hash produces."""
    low, high = sorted((t1, t2))
    before = Allocation(weights, low).variant_index(u)
    if before is not None:
        assert Allocation(weights, high).variant_index(u) == before


@given(weights=weight_lists(min_size=2), traffic=traffics)
def test_ranges_are_ordered_and_disjoint(weights: list[float], traffic: float) -> None:
    ranges = Allocation(weights, traffic).ranges
    assert len(ranges) == len(weights)
    for (start, end), (next_start, _) in itertools.pairwise(ranges):
        assert start <= end <= next_start


@given(
    user_id=user_ids,
    salt=salts,
    weights=weight_lists(),
    position=st.integers(0, 6),
    traffic=traffics,
    u=units,
)
def test_zero_weight_variant_never_receives_anyone(
    user_id: str, salt: str, weights: list[float], position: int, traffic: float, u: float
) -> None:
    position = min(position, len(weights))
    with_zero = [*weights[:position], 0.0, *weights[position:]]
    assert bucket_for(user_id, salt, with_zero, traffic) != position
    assert Allocation(with_zero, traffic).variant_index(u) != position


# ---------------------------------------------------------------------------------------------------
# Statistics over 100k fixed users. Each test asserts p > ALPHA for the real assignment and, as a
# negative control, p < ALPHA (by a wide margin) for a known-bad one, so the check can fail.


@cache
def users() -> tuple[str, ...]:
    rng = random.Random(20240611)
    return tuple(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_USERS))


def signed_hash_u(salt: str, user_id: str) -> float:
    """A classic porting bug: mmh3's default signed=True gives u in [-0.5, 0.5)."""
    return mmh3.hash(f"{salt}:{user_id}".encode()) / 2**32


def unsalted_u(_salt: str, user_id: str) -> float:
    """The original sketch's bug: hashing the user id alone, the same for every experiment."""
    return mmh3.hash(user_id.encode(), 0, False) / 2**32


def split(salt: str, weights: Sequence[float], traffic: float = 1.0) -> Counter[int | None]:
    return Counter(bucket_for(user_id, salt, weights, traffic) for user_id in users())


def split_with(
    u_of: Callable[[str, str], float], salt: str, weights: Sequence[float], traffic: float = 1.0
) -> Counter[int | None]:
    allocation = Allocation(weights, traffic)
    return Counter(allocation.variant_index(u_of(salt, user_id)) for user_id in users())


def goodness_of_fit(counts: Counter[int | None], weights: Sequence[float]) -> float:
    """Chi-squared p-value of the enrolled users' split against the weights."""
    observed = [counts[i] for i in range(len(weights))]
    expected = [sum(observed) * w for w in weights]
    return float(stats.chisquare(observed, f_exp=expected).pvalue)


SPLITS = {"50/50": [0.5, 0.5], "30/40/30": [0.3, 0.4, 0.3], "90/10": [0.9, 0.1]}


@needs_scipy
@pytest.mark.parametrize("weights", SPLITS.values(), ids=SPLITS.keys())
def test_split_matches_weights(weights: list[float]) -> None:
    counts = split("exp-split", weights)
    assert counts[None] == 0
    assert goodness_of_fit(counts, weights) > ALPHA


@needs_scipy
def test_goodness_of_fit_detects_bad_splits() -> None:
    # The signed-hash bug sends every negative u nowhere: variant 1 of a 50/50 split stays empty.
    broken = split_with(signed_hash_u, "exp-split", [0.5, 0.5])
    assert broken[1] == 0
    assert goodness_of_fit(broken, [0.5, 0.5]) < 1e-100
    # And the test has the power to see a 2-point skew: a 52/48 split is not 50/50.
    assert goodness_of_fit(split("exp-split", [0.52, 0.48]), [0.5, 0.5]) < 1e-6


def enrolled_fraction_pvalue(counts: Counter[int | None], traffic: float) -> float:
    enrolled = N_USERS - counts[None]
    return float(stats.binomtest(enrolled, N_USERS, traffic).pvalue)


@needs_scipy
@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.3, 0.4, 0.3]], ids=["50/50", "30/40/30"])
def test_enrolled_fraction_matches_traffic(weights: list[float]) -> None:
    counts = split("exp-traffic", weights, traffic=0.5)
    assert enrolled_fraction_pvalue(counts, 0.5) > ALPHA
    assert goodness_of_fit(counts, weights) > ALPHA  # the enrolled half still follows the weights


@needs_scipy
def test_enrolled_fraction_test_detects_the_signed_hash_bug() -> None:
    broken = split_with(signed_hash_u, "exp-traffic", [0.5, 0.5], traffic=0.5)
    assert abs((N_USERS - broken[None]) / N_USERS - 0.25) < 0.01  # only u in [0, 0.25) enrolls
    assert enrolled_fraction_pvalue(broken, 0.5) < 1e-100


def joint_table(
    u_of: Callable[[str, str], float], first: tuple[str, list[float]], second: tuple[str, list[float]]
) -> list[list[int]]:
    (salt_a, weights_a), (salt_b, weights_b) = first, second
    alloc_a, alloc_b = Allocation(weights_a, 1.0), Allocation(weights_b, 1.0)
    table = [[0] * len(weights_b) for _ in weights_a]
    for user_id in users():
        a = alloc_a.variant_index(u_of(salt_a, user_id))
        b = alloc_b.variant_index(u_of(salt_b, user_id))
        assert a is not None
        assert b is not None
        table[a][b] += 1
    return table


@needs_scipy
def test_experiments_with_different_salts_split_independently() -> None:
    table = joint_table(unit_interval, ("exp-a", [0.5, 0.5]), ("exp-b", [0.3, 0.4, 0.3]))
    assert stats.chi2_contingency(table).pvalue > ALPHA
    same_shape = joint_table(unit_interval, ("exp-a", [0.5, 0.5]), ("exp-b", [0.5, 0.5]))
    assert stats.chi2_contingency(same_shape).pvalue > ALPHA


@needs_scipy
def test_unsalted_hash_makes_experiments_perfectly_dependent() -> None:
    """Negative control: without the salt, everyone in A's control is in B's control too."""
    table = joint_table(unsalted_u, ("exp-a", [0.5, 0.5]), ("exp-b", [0.5, 0.5]))
    assert table[0][1] == 0
    assert table[1][0] == 0
    assert stats.chi2_contingency(table).pvalue < 1e-300
