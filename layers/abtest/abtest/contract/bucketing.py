"""Deterministic bucketing: which variant of an experiment a user sees.

The contract (SDKs in other languages reproduce it bit for bit; tests/golden/assignment_vectors.json
holds the reference cases):

    key = UTF-8 bytes of f"{salt}:{user_id}"      (no Unicode normalisation, no trimming)
    h   = MurmurHash3_x86_32(key, seed=0), read as an unsigned 32-bit integer
    u   = h / 2**32                             (exact in IEEE double; 0 <= u < 1)

Variants keep their stored order. With weights w_0..w_{n-1} and traffic allocation t:

    c_i   = w_0 + w_1 + ... + w_{i-1}          (IEEE double, added one at a time, left to right)
    end_i = c_i + (t * w_i)                    (product rounded first: no fused multiply-add)

Variant i owns the half-open range [c_i, end_i). A u outside every range is not enrolled.

Raising t only moves each end_i to the right while every c_i stays put, so an enrolled user keeps
their variant when traffic grows, and the ranges never overlap. The salt defaults to the experiment
id and never changes: a different salt per experiment keeps assignments in different experiments
independent of each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

__all__ = ["WEIGHT_SUM_TOLERANCE", "Allocation", "bucket_for", "unit_interval"]

# Same tolerance as the API's "weights sum to 1" rule; anything bigger is refused here because a
# variant reaching past 1 silently gets fewer users than its weight (e.g. weights given in percent).
WEIGHT_SUM_TOLERANCE = 1e-9

_MAX_TOTAL = 1.0 + WEIGHT_SUM_TOLERANCE
_TWO_TO_THE_32 = 4294967296.0  # 2**32 as a float: h / 2**32 is exact because h < 2**32


def unit_interval(salt: str, user_id: str) -> float:
    """Return the user's position u in [0, 1) for an experiment salt.

    u = MurmurHash3_x86_32(utf8(f"{salt}:{user_id}"), seed=0) / 2**32, with the hash unsigned.
    Raises ValueError for an empty salt or for text that is not valid Unicode (a lone surrogate)
    and TypeError for a user_id that is not a str (None must not hash as the string "None").
    """
    if not salt:
        raise ValueError("salt must be a non-empty string (it defaults to the experiment id)")
    try:
        # `+` rather than an f-string so that a non-str raises TypeError. Encode explicitly: mmh3 5.x
        # crashes the interpreter (SIGSEGV) on a str holding a lone surrogate such as "\ud800",
        # which json.loads happily produces from the JSON text "\\ud800".
        key = (salt + ":" + user_id).encode()
    except UnicodeEncodeError as error:
        raise ValueError(
            f"salt and user_id must be valid Unicode text (no lone surrogates): {error}"
        ) from None
    return mmh3.hash(key, 0, False) / _TWO_TO_THE_32


def _check_traffic(traffic_allocation: float) -> None:
    if not 0.0 <= traffic_allocation <= 1.0:  # also rejects NaN
        raise ValueError(f"traffic_allocation must be in [0, 1], got {traffic_allocation!r}")


def _weight_error(index: int, weight: float) -> ValueError:
    return ValueError(f"weights[{index}] must be a non-negative number, got {weight!r}")


def _check_total(total: float, count: int) -> None:
    if count == 0:
        raise ValueError("weights must name at least one variant")
    if not total <= _MAX_TOTAL:  # also rejects NaN and infinity
        raise ValueError(f"weights must sum to at most 1 (fractions, not percentages); they sum to {total!r}")


def bucket_for(user_id: str, salt: str, weights: Sequence[float], traffic_allocation: float) -> int | None:
    """Return the index of the user's variant, or None when the user is not enrolled.

    `weights` are in the variants' stored order and must be non-negative and sum to at most 1
    (within 1e-9); `traffic_allocation` must be in [0, 1]. Raises ValueError otherwise.
    One pass over the weights both validates them and finds the variant; nothing is cached.
    """
    u = unit_interval(salt, user_id)
    if not 0.0 <= traffic_allocation <= 1.0:  # inline fast path; the helper builds the message
        _check_traffic(traffic_allocation)
    found: int | None = None
    start = 0.0  # c_i
    index = 0
    for weight in weights:
        if not weight >= 0.0:  # also rejects NaN
            raise _weight_error(index, weight)
        # The ranges are disjoint (end_i <= c_{i+1} even after rounding), so at most one matches.
        if start <= u < start + traffic_allocation * weight:
            found = index
        start += weight
        index += 1
    if not (index and start <= _MAX_TOTAL):
        _check_total(start, index)
    return found


class Allocation:
    """The ranges of one experiment, computed once, for assigning many users.

    `Allocation(weights, traffic).variant_index(unit_interval(salt, user_id))` always equals
    `bucket_for(user_id, salt, weights, traffic)`.
    """

    __slots__ = ("ranges",)

    ranges: tuple[tuple[float, float], ...]

    def __init__(self, weights: Sequence[float], traffic_allocation: float) -> None:
        """Validate like bucket_for and compute each variant's [start, end) range."""
        _check_traffic(traffic_allocation)
        ranges = []
        start = 0.0
        for index, weight in enumerate(weights):
            if not weight >= 0.0:
                raise _weight_error(index, weight)
            ranges.append((start, start + traffic_allocation * weight))
            start += weight
        _check_total(start, len(ranges))
        self.ranges = tuple(ranges)

    def variant_index(self, u: float) -> int | None:
        """Return the index of the variant whose range holds u, or None when none does."""
        for index, (start, end) in enumerate(self.ranges):
            if start <= u < end:
                return index
        return None

    def __repr__(self) -> str:
        return f"Allocation(ranges={self.ranges!r})"
