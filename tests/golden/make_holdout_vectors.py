"""Regenerate tests/golden/holdout_vectors.json: the cross-language golden vectors for holdout membership.

    python tests/golden/make_holdout_vectors.py

Independent of abtest.contract: the hash is make_assignment_vectors.py's own MurmurHash3_x86_32, and
the group size is computed from the percent's decimal text with exact rationals. If
abtest/contract/holdouts.py and this script ever disagree, tests/unit/test_holdouts.py fails.
Deterministic (fixed seed): rerunning it must not change the file.
"""

from __future__ import annotations

import json
import random
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_assignment_vectors import key_of, murmur3_x86_32

OUT = Path(__file__).with_name("holdout_vectors.json")
BUCKETS = 10_000
SALT = "8d2f4c1a-6b3e-4f5d-9a7c-1e0b2d3c4f5a"


def size_of(percent: str) -> int:
    exact = Fraction(percent) * BUCKETS
    assert exact.denominator == 1, percent
    assert 0 < exact <= 1000, percent
    return int(exact)


def case(name: str, salt: str, user_id: str, percent: str, note: str = "") -> dict[str, Any]:
    key = key_of(salt, user_id)
    h = murmur3_x86_32(key)
    bucket = h % BUCKETS
    size = size_of(percent)
    group = "holdout" if bucket < size else "measurement" if bucket < 2 * size else None
    entry: dict[str, Any] = {
        "name": name,
        "holdout_salt": salt,
        "user_id": user_id,
        "percent": float(percent),
        "key_utf8_hex": key.hex(),
        "hash": h,
        "expected_bucket": bucket,
        "expected_size": size,
        "expected_group": group,
    }
    if note:
        entry["note"] = note
    return entry


def boundary_user(salt: str, bucket: int) -> str:
    """The first user-N whose bucket is exactly `bucket`."""
    for n in range(10_000_000):
        user = f"user-{n}"
        if murmur3_x86_32(key_of(salt, user)) % BUCKETS == bucket:
            return user
    raise AssertionError(f"no user in bucket {bucket}")


def cases() -> list[dict[str, Any]]:
    out = [
        case("japanese_user", SALT, "ユーザー", "0.05"),
        case("colon_salt", "h:1", "u", "0.1", note="the key is 'h:1:u'"),
        case(
            "float_percent",
            SALT,
            boundary_user(SALT, 700),
            "0.07",
            note="bucket 700 is measurement: size is exactly 700 (a float 0.07 * 10000 is 700.0000000000001)",
        ),
    ]
    for percent in ("0.05", "0.0001"):
        size = size_of(percent)
        for label, bucket in (
            ("last_holdout", size - 1),
            ("first_measurement", size),
            ("last_measurement", 2 * size - 1),
            ("first_outside", 2 * size),
        ):
            user = boundary_user(SALT, bucket)
            out.append(case(f"{label}_{percent}", SALT, user, percent, note=f"bucket {bucket}"))
    rng = random.Random(20261203)
    for i in range(30):
        user = f"user-{rng.randrange(10**6):06d}" if i % 2 else f"{rng.getrandbits(64):016x}"
        percent = ("0.1", "0.05", "0.02", "0.0125")[i % 4]
        out.append(case(f"random_{i:02d}", SALT, user, percent))
    return out


def render() -> str:
    """The full text of holdout_vectors.json."""
    items = cases()
    header = {
        "description": (
            "Golden vectors for holdouts. bucket = MurmurHash3_x86_32(UTF-8 bytes of holdout_salt + ':' + "
            "user_id, seed 0) as unsigned, mod 10000; size = percent * 10000 exactly (percent is a multiple "
            "of 0.0001, read as decimal text); bucket < size: holdout; size <= bucket < 2 * size: "
            "measurement; otherwise null (not a member)."
        ),
        "generated_by": "tests/golden/make_holdout_vectors.py",
        "buckets": BUCKETS,
    }
    head = json.dumps(header, ensure_ascii=False, indent=1).rstrip().removesuffix("}").rstrip()
    rows = ",\n  ".join(json.dumps(item, ensure_ascii=False) for item in items)
    text = f'{head},\n "cases": [\n  {rows}\n ]\n}}\n'
    assert json.loads(text)["cases"] == items
    return text


def main() -> None:
    text = render()
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['cases'])} holdout cases to {OUT}")


if __name__ == "__main__":
    main()
