"""The stratified assignment contract: permuted blocks per stratum (pure; no SQL, no HTTP).

A stratified experiment enrolls the k-th new user of a stratum (k = 0, 1, ...) into slot
`block_order(salt, stratum, k // B)[k % B]` of its block, where the block holds every variant in
proportion to its weight: variant i appears `w_i * B` times, in stored order (`block_slots`), and B is
the smallest block size for which every weight is a multiple of 1/B (`block_size`, at most 20).

The order of block b is a Fisher-Yates shuffle of the positions 0..B-1: for i from B-1 down to 1,
j = u32(SHA-256(utf8(f"{salt}:{stratum}:{b}:{i}"))) mod (i + 1), swap positions i and j, where u32 is
the digest's first 4 bytes read as a big-endian unsigned integer. The database runs the same rule
(the function abtest_block_slot of migration 0016) inside the enrollment statement; the golden vectors
in tests/golden/block_vectors.json tie the two. SHA-256 rather than the bucketing's MurmurHash3 because
PostgreSQL has it built in; the modulo bias (at most 20 / 2^32) is immaterial.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# A weight counts as a multiple of 1/B when w * B is this close to an integer (weights are doubles).
BLOCK_TOLERANCE = 1e-6


def block_size(weights: Sequence[float], largest: int) -> int | None:
    """The smallest B <= `largest` for which every weight times B is an integer; None if there is none."""
    for size in range(1, largest + 1):
        counts = [w * size for w in weights]
        whole = all(abs(c - round(c)) <= BLOCK_TOLERANCE and round(c) >= 1 for c in counts)
        if whole and sum(round(c) for c in counts) == size:
            return size
    return None


def block_slots(weights: Sequence[float], size: int) -> list[int]:
    """The variant index held by each slot of a block: variant i repeated w_i * B times, in order."""
    slots: list[int] = []
    for index, weight in enumerate(weights):
        slots.extend([index] * round(weight * size))
    assert len(slots) == size, "block_size guarantees that the weights fill the block"
    return slots


def _draw(salt: str, stratum: str, block: int, i: int) -> int:
    digest = hashlib.sha256(f"{salt}:{stratum}:{block}:{i}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def block_order(salt: str, stratum: str, block: int, size: int) -> list[int]:
    """The slots of block `block` of a stratum in enrollment order (a permutation of 0..size-1)."""
    order = list(range(size))
    for i in range(size - 1, 0, -1):
        j = _draw(salt, stratum, block, i) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def stratified_variant(salt: str, stratum: str, position: int, slots: Sequence[int]) -> int:
    """The variant index of the stratum's `position`-th new user (0-based)."""
    size = len(slots)
    return slots[block_order(salt, stratum, position // size, size)[position % size]]
