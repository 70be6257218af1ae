"""Regenerate tests/golden/assignment_vectors.json and namespace_vectors.json: the cross-language golden
vectors for bucketing and for the whole namespace decision (bucket, owner, variant).

    python tests/golden/make_assignment_vectors.py

Deliberately independent of abtest.contract.bucketing and of the mmh3 C extension: MurmurHash3_x86_32 is
written out below from the reference algorithm (and checked against published test values), and
the variant is found by comparing u to each range exactly, as rationals. If bucketing.py and this
script ever disagree, tests/unit/test_bucketing.py fails.

The output is deterministic (fixed random seed), so rerunning it must not change the file.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("assignment_vectors.json")
NAMESPACE_OUT = Path(__file__).with_name("namespace_vectors.json")
NAMESPACE_BUCKETS = 10_000
MASK = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 (Austin Appleby's reference MurmurHash3.cpp), as an unsigned integer."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & MASK
    body = len(data) - len(data) % 4
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = _rotl32((k * c1) & MASK, 15)
        h ^= (k * c2) & MASK
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & MASK
    tail = data[body:]
    if tail:
        k = _rotl32((int.from_bytes(tail, "little") * c1) & MASK, 15)
        h ^= (k * c2) & MASK
    h ^= len(data) & MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    h ^= h >> 16
    return h


# Published MurmurHash3_x86_32 values (SMHasher's verification inputs as commonly quoted).
_KNOWN = [
    (b"", 0, 0x00000000),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\0\0\0\0", 0, 0x2362F9DE),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


def reference_variant(h: int, weights: list[float], traffic: float) -> int | None:
    """The contract, straightforwardly: float ranges built left to right, compared exactly to h/2**32."""
    u = Fraction(h, 2**32)
    starts = []
    c = 0.0
    for w in weights:
        starts.append(c)
        c = c + w  # one IEEE double addition at a time, left to right
    for i, (c_i, w) in enumerate(zip(starts, weights, strict=True)):
        product = traffic * w  # rounded to a double before the addition: no fused multiply-add
        end = c_i + product
        if Fraction(c_i) <= u < Fraction(end):
            return i
    return None


def key_of(salt: str, user_id: str) -> bytes:
    return f"{salt}:{user_id}".encode()


def u_of(salt: str, user_id: str) -> float:
    h = murmur3_x86_32(key_of(salt, user_id))
    u = h / 2**32
    assert Fraction(u) == Fraction(h, 2**32)  # the division is exact
    return u


def case(
    name: str, salt: str, user_id: str, weights: list[float], traffic: float, note: str = ""
) -> dict[str, Any]:
    key = key_of(salt, user_id)
    h = murmur3_x86_32(key)
    entry: dict[str, Any] = {
        "name": name,
        "salt": salt,
        "user_id": user_id,
        "key_utf8_hex": key.hex(),
        "hash": h,
        "expected_u_hex": (h / 2**32).hex(),
        "weights": weights,
        "traffic_allocation": traffic,
        "expected_variant_index": reference_variant(h, weights, traffic),
    }
    if note:
        entry["note"] = note
    return entry


def edge_cases() -> list[dict[str, Any]]:
    out = []
    half = [0.5, 0.5]
    three = [0.3, 0.4, 0.3]
    # Text: non-ASCII, normalisation, emoji, separators, whitespace, key lengths 1..8 (hash tails).
    users = {
        "japanese": "ユーザー",
        "nfc_jose": "jos\u00e9",
        "nfd_jose": "jose\u0301",
        "emoji_party": "\U0001f389",
        "emoji_zwj_sequence": "\U0001f469\u200d\U0001f4bb",
        "flag_emoji": "\U0001f1ef\U0001f1f5",
        "cyrillic": "пользователь-42",
        "arabic_rtl": "مستخدم",
        "empty_user_id": "",
        "space_user_id": " ",
        "trailing_space": "user-1 ",
        "colon_user_id": ":",
        "double_colon_user_id": "::",
        "nul_char": "user\u00001",
        "uuid": "3f2b8c1e-7d4a-4e0b-9c55-1a2b3c4d5e6f",
        "email": "Jane.Doe+test@example.com",
        "upper_case": "USER-1",
        "long_1000": "x" * 1000,
    }
    notes = {
        "nfd_jose": "NFD form of user_nfc_jose: ids are hashed as given, with no Unicode normalisation",
        "empty_user_id": "key is 'exp-checkout:'; rejecting missing ids is the caller's job",
        "nul_char": "U+0000 inside the id is hashed like any other character",
    }
    for label, user in users.items():
        out.append(case(f"user_{label}", "exp-checkout", user, three, 1.0, note=notes.get(label, "")))
    for n in range(1, 9):  # salt "s" + ":" + n-2.. chars: key lengths 2..9 cover every tail length
        out.append(case(f"key_length_{n + 2}", "s", "u" * n, half, 1.0))
    # Salts: colons, non-ASCII, long.
    out.append(case("salt_with_colon", "exp:1", "u", half, 1.0))
    out.append(
        case(
            "salt_colon_collision",
            "exp",
            "1:u",
            half,
            1.0,
            note="same key bytes as salt_with_colon: 'exp:1' + ':' + 'u' == 'exp' + ':' + '1:u'",
        )
    )
    out.append(case("salt_ending_in_colon", "exp:", "u", half, 1.0))
    out.append(case("salt_is_colon", ":", "u", half, 1.0))
    out.append(case("salt_non_ascii", "試験-ボタン色", "user-1", three, 1.0))
    out.append(case("salt_emoji", "\U0001f9ea", "user-1", three, 1.0))
    out.append(case("salt_uuid", "0b6f1a52-2d3e-4c8f-a1b2-c3d4e5f60718", "user-1", three, 1.0))
    out.append(case("salt_long_128", "s" * 128, "user-1", three, 1.0))
    # Traffic 0 and 1, zero weights in every position, 2 to 5 variants.
    for user in ("user-1", "user-2", "user-3"):
        out.append(case(f"traffic_zero_{user}", "exp-checkout", user, three, 0.0))
    out.append(case("zero_weight_first", "exp-zero", "user-7", [0.0, 0.5, 0.5], 1.0))
    out.append(case("zero_weight_middle", "exp-zero", "user-7", [0.5, 0.0, 0.5], 1.0))
    out.append(case("zero_weight_last", "exp-zero", "user-7", [0.6, 0.4, 0.0], 1.0))
    out.append(case("single_variant", "exp-rollout", "user-7", [1.0], 0.5))
    out.append(case("weights_sum_below_one", "exp-holdback", "user-7", [0.45, 0.45], 1.0))
    return out


def boundary_cases() -> list[dict[str, Any]]:
    """Cases built around one user's exact u, pinning the half-open ranges and the arithmetic."""
    out = []
    salt, user = "exp-boundary", "user-41"
    u = u_of(salt, user)
    assert 0.25 < u < 0.5, "pick another user: these constructions assume 0.25 < u < 0.5"

    out.append(
        case(
            "u_equals_start_of_variant_1",
            salt,
            user,
            [u, 1.0 - u],  # both exact: u has at most 32 significant bits
            1.0,
            note="u == c_1 exactly: ranges are half-open [c_i, end_i), so variant 1",
        )
    )
    out.append(
        case(
            "u_equals_end_of_variant_0",
            salt,
            user,
            [0.5, 0.5],
            2.0 * u,  # 0.5 * t == u exactly
            note="u == end_0 exactly: the end is excluded, so not enrolled",
        )
    )
    out.append(
        case(
            "u_just_below_end_of_variant_0",
            salt,
            user,
            [0.5, 0.5],
            math.nextafter(2.0 * u, 1.0),
            note="the next double after u_equals_end_of_variant_0's traffic enrolls the user",
        )
    )

    # Left-to-right summation: two half-ulp weights vanish one at a time (ties round to even) but
    # not when summed together, as fsum, Kahan/Neumaier (Python >= 3.12 sum(), Java's
    # DoubleStream.sum()) would do. The contract's answer is variant 3; those sums give null.
    half_ulp = math.ulp(u) / 2
    weights = [u, half_ulp, half_ulp, 1.0 - u]
    assert u + half_ulp + half_ulp == u  # each half ulp is lost on its own (tie to even)
    assert math.fsum(weights[:3]) > u  # but not when the sum is compensated
    out.append(
        case(
            "summation_left_to_right",
            salt,
            user,
            weights,
            1.0,
            note="c_3 must be ((w0 + w1) + w2): a compensated sum gives c_3 > u and no variant",
        )
    )

    # Rounding of t * w before the addition: find a traffic where a fused multiply-add (allowed
    # by Go on arm64/ppc64/s390x, by C with -ffp-contract=fast) lands on the other side of u.
    w0, w1 = 0.25, 0.75
    t = (u - w0) / w1
    for _ in range(200):
        separate = w0 + t * w1
        fused = float(Fraction(w0) + Fraction(t) * Fraction(w1))  # one rounding, like an FMA
        if separate <= u < fused:
            break
        t = math.nextafter(t, 1.0)
    else:
        raise AssertionError("no traffic value separates FMA from mul-then-add near this u")
    out.append(
        case(
            "no_fused_multiply_add",
            salt,
            user,
            [w0, w1],
            t,
            note="c_1 + round(t * w_1) <= u: null; one fused multiply-add rounds to above u and gives 1",
        )
    )
    return out


def random_cases(count: int) -> list[dict[str, Any]]:
    rng = random.Random(20240611)
    salts = ["exp-checkout-button", "homepage_hero_2024", "pricing-page", "a", "search-ranking-v3"]
    weight_sets = [
        [0.5, 0.5],
        [0.9, 0.1],
        [0.3, 0.4, 0.3],
        [1 / 3, 1 / 3, 1 / 3],
        [0.1, 0.2, 0.7],
        [0.25, 0.25, 0.25, 0.25],
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.05, 0.15, 0.3, 0.5],
        [0.4, 0.0, 0.3, 0.0, 0.3],
    ]
    traffics = [1.0, 1.0, 0.8, 0.5, 0.25, 0.1]
    out = []
    for i in range(count):
        user = f"user-{rng.randrange(10**6):06d}" if i % 2 else f"{rng.getrandbits(64):016x}"
        out.append(
            case(f"random_{i:02d}", rng.choice(salts), user, rng.choice(weight_sets), rng.choice(traffics))
        )
    return out


def _invalid(name: str, weights: list[float], traffic: float, salt: str = "exp-invalid") -> dict[str, Any]:
    return {
        "name": name,
        "salt": salt,
        "user_id": "user-1",
        "weights": weights,
        "traffic_allocation": traffic,
    }


INVALID_CASES = [
    _invalid("negative_weight", [0.6, -0.1, 0.5], 1.0),
    _invalid("percentages_not_fractions", [50, 50], 1.0),
    _invalid("weights_sum_above_one", [0.6, 0.6], 1.0),
    _invalid("no_variants", [], 1.0),
    _invalid("traffic_above_one", [0.5, 0.5], 1.5),
    _invalid("traffic_negative", [0.5, 0.5], -0.1),
    _invalid("traffic_as_percent", [0.5, 0.5], 50),
    _invalid("empty_salt", [0.5, 0.5], 1.0, salt=""),
]


def _rows(items: list[dict[str, Any]]) -> str:
    """A JSON array with one object per line: reviewable, and regenerating gives small diffs."""
    return "[\n" + ",\n".join("  " + json.dumps(i, ensure_ascii=False) for i in items) + "\n ]"


def render() -> str:
    """The full text of assignment_vectors.json (the unit tests check the file matches it)."""
    for data, seed, expected in _KNOWN:
        assert murmur3_x86_32(data, seed) == expected, (data, seed)
    cases = edge_cases() + boundary_cases() + random_cases(40)
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    header = {
        "description": (
            "Golden vectors for deterministic bucketing. h = MurmurHash3_x86_32(UTF-8 bytes of "
            "salt + ':' + user_id, seed 0) as unsigned; u = h / 2**32; variant i owns "
            "[c_i, c_i + t * w_i) where c_i is the left-to-right IEEE-double sum of the weights "
            "before it and t the traffic allocation; null means not enrolled."
        ),
        "generated_by": "tests/golden/make_assignment_vectors.py",
        "fields": {
            "key_utf8_hex": "the exact bytes hashed, hex",
            "hash": "unsigned 32-bit MurmurHash3_x86_32 of those bytes, seed 0",
            "expected_u_hex": "u = hash / 2**32 as a C99 hexadecimal float (exact)",
            "expected_variant_index": "0-based variant index, or null when not enrolled",
            "invalid_cases": (
                "inputs the reference implementation rejects with ValueError: an empty salt, "
                "negative weights, weights summing to more than 1 + 1e-9, no variants, traffic "
                "outside [0, 1]"
            ),
        },
    }
    head = json.dumps(header, ensure_ascii=False, indent=1).rstrip().removesuffix("}").rstrip()
    text = f'{head},\n "cases": {_rows(cases)},\n "invalid_cases": {_rows(INVALID_CASES)}\n}}\n'
    assert json.loads(text)["cases"] == cases
    return text


def namespace_case(
    name: str,
    namespace_salt: str,
    user_id: str,
    allocations: list[dict[str, Any]],
    note: str = "",
) -> dict[str, Any]:
    """One whole decision for a new user: bucket, the experiment owning it, then its variant."""
    key = key_of(namespace_salt, user_id)
    h = murmur3_x86_32(key)
    bucket = h % NAMESPACE_BUCKETS
    owner = next((a for a in allocations if any(s <= bucket < e for s, e in a["buckets"])), None)
    variant = None
    if owner is not None:
        variant = reference_variant(
            murmur3_x86_32(key_of(owner["salt"], user_id)), owner["weights"], owner["traffic_allocation"]
        )
    entry: dict[str, Any] = {
        "name": name,
        "namespace_salt": namespace_salt,
        "user_id": user_id,
        "key_utf8_hex": key.hex(),
        "hash": h,
        "expected_bucket": bucket,
        "experiments": allocations,
        "expected_experiment": owner["name"] if owner is not None else None,
        "expected_variant_index": variant,
    }
    if note:
        entry["note"] = note
    return entry


def namespace_cases() -> list[dict[str, Any]]:
    salt = "5b0c6a8e-3f47-4c1e-9d2a-7e1f0b9c4d36"
    halves = [
        {
            "name": "left",
            "salt": "exp-left",
            "weights": [0.5, 0.5],
            "traffic_allocation": 1.0,
            "buckets": [[0, 5000]],
        },
        {
            "name": "right",
            "salt": "exp-right",
            "weights": [0.3, 0.4, 0.3],
            "traffic_allocation": 0.5,
            "buckets": [[5000, 10000]],
        },
    ]
    scattered = [
        {
            "name": "a",
            "salt": "exp-a",
            "weights": [0.5, 0.5],
            "traffic_allocation": 1.0,
            "buckets": [[0, 1200], [3000, 3300], [7000, 9100]],
        },
        {
            "name": "b",
            "salt": "exp-b",
            "weights": [0.9, 0.1],
            "traffic_allocation": 1.0,
            "buckets": [[1200, 3000]],
        },
    ]
    rng = random.Random(20261202)
    out = [
        namespace_case("japanese_user", salt, "ユーザー", halves),
        namespace_case("empty_namespace", salt, "user-1", [], note="no experiment owns any bucket"),
        namespace_case("colon_salt", "ns:1", "u", halves, note="the key is 'ns:1:u', as for variants"),
    ]
    for i in range(30):
        user = f"user-{rng.randrange(10**6):06d}" if i % 2 else f"{rng.getrandbits(64):016x}"
        out.append(namespace_case(f"halves_{i:02d}", salt, user, halves))
        out.append(namespace_case(f"scattered_{i:02d}", "checkout-namespace", user, scattered))
    return out


def render_namespaces() -> str:
    """The full text of namespace_vectors.json."""
    cases = namespace_cases()
    header = {
        "description": (
            "Golden vectors for namespaces. bucket = MurmurHash3_x86_32(UTF-8 bytes of namespace_salt "
            "+ ':' + user_id, seed 0) as unsigned, mod 10000; the experiment owning the bucket (its "
            "buckets are half-open ranges [start, end)) may enroll the user, whose variant then follows "
            "assignment_vectors.json's rule with that experiment's salt, weights and traffic. Both "
            "expectations are for a new user (a stored membership or assignment wins)."
        ),
        "generated_by": "tests/golden/make_assignment_vectors.py",
        "buckets": NAMESPACE_BUCKETS,
    }
    head = json.dumps(header, ensure_ascii=False, indent=1).rstrip().removesuffix("}").rstrip()
    text = f'{head},\n "cases": {_rows(cases)}\n}}\n'
    assert json.loads(text)["cases"] == cases
    return text


def main() -> None:
    text = render()
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['cases'])} cases and {len(INVALID_CASES)} invalid cases to {OUT}")
    text = render_namespaces()
    NAMESPACE_OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['cases'])} namespace cases to {NAMESPACE_OUT}")


if __name__ == "__main__":
    main()
