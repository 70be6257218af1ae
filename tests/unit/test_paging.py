"""The one cursor codec of every keyset listing: positions round-trip, anything else is a 422 naming
`cursor` (never a 500), whatever a client sends."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest.domain.paging import decode_cursor, encode_cursor
from abtest.errors import InvalidInput


def raw(parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def test_positions_round_trip() -> None:
    at = datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    row = uuid4()
    assert decode_cursor(encode_cursor(at, 42), datetime, int) == (at, 42)
    assert decode_cursor(encode_cursor(at, row), datetime, UUID) == (at, row)
    assert decode_cursor(encode_cursor("checkout.v2"), str) == ("checkout.v2",)
    assert "=" not in encode_cursor(at, row)  # URL-safe, unpadded


@pytest.mark.parametrize(
    ("cursor", "shape"),
    [
        ("garbage", (datetime, int)),
        ("", (str,)),
        (encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), 42)[:-3], (datetime, int)),  # truncated
        (raw(["x", 1]), (datetime, int)),  # not a time
        (raw(["2026-05-01", 1]), (datetime, int)),  # a naive time
        (raw(["2026-05-01T00:00:00+00:00", True]), (datetime, int)),  # a bool is not an id
        (raw(["2026-05-01T00:00:00+00:00", "1"]), (datetime, int)),
        (raw(["2026-05-01T00:00:00+00:00", "not-a-uuid"]), (datetime, UUID)),
        (raw(["a", "b"]), (str,)),  # another listing's shape
        (raw({"a": 1}), (str,)),
        (raw([1]), (str,)),
        ("\u00e9t\u00e9", (str,)),
        (raw(["a\x00b"]), (str,)),  # NUL: no text column holds it
        (raw([2**63]), (int,)),  # beyond a bigint
        ("W" * 40000, (str,)),
        (base64.urlsafe_b64encode(b"[" * 100000).decode(), (str,)),  # nested past the parser's depth
    ],
)
def test_anything_else_is_refused_naming_cursor(cursor: str, shape: tuple[type, ...]) -> None:
    with pytest.raises(InvalidInput) as raised:
        decode_cursor(cursor, *shape)
    assert raised.value.field == "cursor"


@given(st.text(max_size=200))
def test_no_text_breaks_the_decoder(cursor: str) -> None:
    with pytest.raises(InvalidInput) as raised:  # random text is never a time and a UUID in base64 JSON
        decode_cursor(cursor, datetime, UUID)
    assert raised.value.field == "cursor"
