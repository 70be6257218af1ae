"""Regenerate tests/golden/block_vectors.json: the stratified assignment contract's block order
(docs/assignment-contract.md, steps 10 to 12), written out here from the rule itself, independently of
abtest.contract.blocks (which tests/unit/test_blocks.py checks against this file) and of the database's
abtest_block_slot (tests/integration/test_breakdowns.py).

Each case gives `salt`, `stratum`, `weights`, the block size `size` (smallest B with every weight a
multiple of 1/B), `slots` (the variant index of each slot: variant i repeated w_i * B times), and for
`blocks` consecutive blocks the `orders` (slot of each position) and `variants` (the variant index
of each new user of the stratum, in enrollment order). `invalid_weights` have no block of at most 20.
Deterministic: rerunning `python tests/golden/make_block_vectors.py` must not change the file.
"""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("block_vectors.json")
LARGEST = 20


def size_of(weights: list[str]) -> int | None:
    exact = [Fraction(w) for w in weights]
    for size in range(1, LARGEST + 1):
        if all((w * size).denominator == 1 and w * size >= 1 for w in exact):
            return size
    return None


def order(salt: str, stratum: str, block: int, size: int) -> list[int]:
    positions = list(range(size))
    for i in range(size - 1, 0, -1):
        digest = hashlib.sha256(f"{salt}:{stratum}:{block}:{i}".encode()).digest()
        j = int.from_bytes(digest[:4], "big") % (i + 1)
        positions[i], positions[j] = positions[j], positions[i]
    return positions


def case(salt: str, stratum: str, weights: list[str], blocks: int) -> dict[str, Any]:
    size = size_of(weights)
    assert size is not None
    slots = [i for i, w in enumerate(weights) for _ in range(int(Fraction(w) * size))]
    orders = [order(salt, stratum, b, size) for b in range(blocks)]
    return {
        "salt": salt,
        "stratum": stratum,
        "weights": [float(Fraction(w)) for w in weights],
        "size": size,
        "slots": slots,
        "orders": orders,
        "variants": [slots[slot] for o in orders for slot in o],
    }


def cases() -> dict[str, Any]:
    designs = [
        ["1/2", "1/2"],
        ["1/4", "3/4"],
        ["1/2", "1/4", "1/4"],
        ["1/3", "1/3", "1/3"],
        ["1/5", "1/5", "1/5", "1/5", "1/5"],
        ["1/10", "9/10"],
        ["3/20", "7/20", "1/2"],
        ["1/20"] * 20,
    ]
    strata = ["FR", "US", "(none)", "(other)", "josé", "ユーザー", "tier:gold", ""]
    out = []
    for n, weights in enumerate(designs):
        for m, stratum in enumerate(strata[: 2 + n % 3]):
            out.append(case(f"salt-{n}-{m}", stratum, weights, 3))
    out.append(case("5d73ba2c-3a03-4fb8-b5dd-807d5652195a", "DE", ["1/2", "1/2"], 10))
    return {
        "cases": out,
        "invalid_weights": [[0.52, 0.48], [1 / 21, 20 / 21], [0.01, 0.99]],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(cases(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
