"""Namespaces: which experiment of a surface a user may belong to (part of the SDK contract).

Every surface has one namespace with its own salt (a random UUID, independent of every experiment
salt) and a fixed space of 10,000 buckets. A user's bucket is

    key    = UTF-8 bytes of f"{namespace_salt}:{user_id}"   (no normalisation, no trimming)
    h      = MurmurHash3_x86_32(key, seed=0), read as an unsigned 32-bit integer
    bucket = h mod 10000

which is the variant rule's hash with another salt, so membership and variant are independent.
Each running or paused experiment owns a set of buckets, disjoint from its siblings' (published as
half-open ranges [start, end)); a user whose bucket an experiment owns may be enrolled in it, and
then the experiment's own traffic allocation and variant ranges apply as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from abtest.contract.bucketing import unit_interval

__all__ = ["NAMESPACE_BUCKETS", "bucket_ranges", "buckets_in", "namespace_bucket"]

NAMESPACE_BUCKETS = 10_000
_TWO_TO_THE_32 = 4294967296.0


def namespace_bucket(namespace_salt: str, user_id: str) -> int:
    """The user's bucket in [0, 10000) of the namespace with this salt.

    MurmurHash3_x86_32(utf8(f"{namespace_salt}:{user_id}"), seed=0) unsigned, modulo 10,000. Raises
    like unit_interval for an empty salt, a lone surrogate or a user_id that is not a str.
    """
    # unit_interval is h / 2**32, exact in a double, so multiplying back gives h exactly.
    return int(unit_interval(namespace_salt, user_id) * _TWO_TO_THE_32) % NAMESPACE_BUCKETS


def bucket_ranges(buckets: Iterable[int]) -> list[tuple[int, int]]:
    """Buckets as sorted, merged half-open ranges: {0, 1, 2, 7} -> [(0, 3), (7, 8)]."""
    ranges: list[tuple[int, int]] = []
    for bucket in sorted(set(buckets)):
        if ranges and ranges[-1][1] == bucket:
            ranges[-1] = (ranges[-1][0], bucket + 1)
        else:
            ranges.append((bucket, bucket + 1))
    return ranges


def buckets_in(ranges: Iterable[tuple[int, int]]) -> list[int]:
    """The buckets of half-open ranges, in order: the inverse of bucket_ranges."""
    return [bucket for start, end in ranges for bucket in range(start, end)]
