"""Regenerate tests/golden/bandit_vectors.json: golden vectors for bucketing a user into a bandit.

    python tests/golden/make_bandit_vectors.py

A bandit buckets a NEW user exactly as any experiment (contract steps 1 to 5), with its current
weights (`bandit.weights` of GET /experiments/{id}, the open period's) instead of the variants'
starting weights, and records the open period (`bandit.period`) with the assignment; before the first
reweight `bandit.weights` is null and the variants' weights apply. A user with a stored assignment
keeps it, whatever the weights say now. Independent of abtest.contract: the hash and the range
comparison are make_assignment_vectors.py's own. Deterministic: rerunning it must not change the file.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_assignment_vectors import key_of, murmur3_x86_32, reference_variant

OUT = Path(__file__).with_name("bandit_vectors.json")
SALT = "6f1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b"
STARTING = [0.34, 0.33, 0.33]
# Weights as reweights produce them (floored at 0.01, summing to 1 within rounding).
STATES: list[tuple[int, list[float] | None]] = [
    (1, None),
    (2, [0.08416298873146304, 0.905837011268537, 0.01]),
    (3, [0.01, 0.01, 0.98]),
    (4, [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]),
]


def case(
    name: str, user_id: str, period: int, weights: list[float] | None, stored: int | None, traffic: float
) -> dict[str, Any]:
    key = key_of(SALT, user_id)
    h = murmur3_x86_32(key)
    used = weights if weights is not None else STARTING
    new = reference_variant(h, used, traffic)
    return {
        "name": name,
        "salt": SALT,
        "user_id": user_id,
        "key_utf8_hex": key.hex(),
        "hash": h,
        "variant_weights": STARTING,
        "traffic_allocation": traffic,
        "bandit": {"period": period, "weights": weights},
        "stored_variant_index": stored,
        "expected_weights_used": None if stored is not None else used,
        "expected_variant_index": stored if stored is not None else new,
        "expected_period_recorded": None if stored is not None or new is None else period,
    }


def cases() -> list[dict[str, Any]]:
    rng = random.Random(2112)
    items = []
    for period, weights in STATES:
        for n in range(12):
            user = f"user-{rng.randrange(10**6)}"
            items.append(case(f"period{period}-new-{n}", user, period, weights, None, 1.0))
        for n in range(3):
            user = f"user-{rng.randrange(10**6)}"
            items.append(case(f"period{period}-traffic-{n}", user, period, weights, None, 0.5))
        for n in range(3):
            user = f"user-{rng.randrange(10**6)}"
            items.append(case(f"period{period}-stored-{n}", user, period, weights, n, 1.0))
    return items


def render() -> str:
    """The full text of bandit_vectors.json."""
    items = cases()
    header = {
        "description": (
            "Golden vectors for bandit experiments. A user with a stored assignment keeps it "
            "(stored_variant_index; no weights are used and no period is recorded). A new user is bucketed "
            "with steps 1 to 5 of the assignment contract using bandit.weights, or variant_weights when "
            "bandit.weights is null, and the assignment records bandit.period (null when not enrolled)."
        ),
        "generated_by": "tests/golden/make_bandit_vectors.py",
    }
    head = json.dumps(header, ensure_ascii=False, indent=1).rstrip().removesuffix("}").rstrip()
    rows = ",\n  ".join(json.dumps(item, ensure_ascii=False) for item in items)
    text = f'{head},\n "cases": [\n  {rows}\n ]\n}}\n'
    assert json.loads(text)["cases"] == items
    return text


def main() -> None:
    text = render()
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['cases'])} bandit cases to {OUT}")


if __name__ == "__main__":
    main()
