"""Holdouts: which users a holdout keeps away from experiments (part of the SDK contract).

Every holdout has its own salt (a random UUID, independent of every experiment and namespace salt)
and a `percent` that is a whole number of basis points (a multiple of 0.0001, at most 0.10). With

    key       = UTF-8 bytes of f"{holdout_salt}:{user_id}"   (no normalisation, no trimming)
    h         = MurmurHash3_x86_32(key, seed=0), read as an unsigned 32-bit integer
    bucket    = h mod 10000
    size      = percent * 10000, an exact integer in [1, 1000] (integer arithmetic: no float compare)

the user is in the group

    holdout       if bucket < size                   (served the defaults on every covered surface)
    measurement   if size <= bucket < 2 * size      (normal traffic, the comparison group)
    none          otherwise

so both groups hold `percent` of the users and are disjoint. This is the namespace bucket rule with
the holdout's salt: membership is independent of namespaces, variants and other holdouts.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal

from abtest.contract.namespaces import NAMESPACE_BUCKETS, namespace_bucket

__all__ = [
    "HOLDOUT_BUCKETS",
    "MAX_HOLDOUT_PERCENT",
    "HoldoutGroup",
    "holdout_bucket",
    "holdout_group",
    "holdout_size",
]

HOLDOUT_BUCKETS = NAMESPACE_BUCKETS
MAX_HOLDOUT_PERCENT = 0.10
HoldoutGroup = Literal["holdout", "measurement"]


def holdout_size(percent: float | Decimal | str) -> int:
    """The holdout group's size in buckets: percent * 10000, exactly.

    Raises ValueError unless 0 < percent <= 0.10 and percent is a multiple of 0.0001 (as decimal
    text: the float 0.07 means the decimal 0.07, read through its shortest repr, so 700 buckets).
    """
    try:
        exact = Decimal(str(percent)) * HOLDOUT_BUCKETS
    except InvalidOperation:
        raise ValueError(f"percent must be a number, got {percent!r}") from None
    if not exact.is_finite() or exact != exact.to_integral_value():
        raise ValueError(f"percent must be a multiple of 0.0001 (one bucket in 10,000), got {percent!r}")
    size = int(exact)
    if not 0 < size <= round(MAX_HOLDOUT_PERCENT * HOLDOUT_BUCKETS):
        raise ValueError(f"percent must be above 0 and at most {MAX_HOLDOUT_PERCENT}, got {percent!r}")
    return size


def holdout_bucket(holdout_salt: str, user_id: str) -> int:
    """The user's bucket in [0, 10000) for a holdout: MurmurHash3(f"{salt}:{user_id}") mod 10000."""
    return namespace_bucket(holdout_salt, user_id)


def holdout_group(holdout_salt: str, user_id: str, size: int) -> HoldoutGroup | None:
    """The user's group in a holdout of `size` buckets (see holdout_size), or None if in neither."""
    if not 0 < size <= HOLDOUT_BUCKETS // 2:
        raise ValueError(f"size must be in [1, {HOLDOUT_BUCKETS // 2}] buckets, got {size!r}")
    bucket = holdout_bucket(holdout_salt, user_id)
    if bucket < size:
        return "holdout"
    if bucket < 2 * size:
        return "measurement"
    return None
