"""One page of a keyset listing as a repository returns it (the HTTP views, abtest.http.schemas, name
the items after their resource: `experiments`, `holdouts`, `events`), and the opaque cursor every
listing hands out for its next page."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from abtest.errors import InvalidInput

Item = TypeVar("Item")


@dataclass(frozen=True)
class Listing(Generic[Item]):
    """Items in listing order, and the opaque cursor of the next page (None: this is the last)."""

    items: list[Item]
    next_cursor: str | None


# --- Cursors: one opaque codec for every keyset listing ------------------------------------------------

CursorPart = datetime | UUID | int | str
_NOT_OURS = "cursor is not one this API returned"


def encode_cursor(*parts: CursorPart) -> str:
    """An opaque cursor for a listing position: its parts (an aware datetime, a UUID, an int, a string)
    as a JSON array in URL-safe base64 without padding."""
    plain = [
        p.isoformat() if isinstance(p, datetime) else str(p) if isinstance(p, UUID) else p for p in parts
    ]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *shape: type[CursorPart]) -> tuple[Any, ...]:
    """The parts of a cursor `encode_cursor` made, converted to `shape` (datetime, UUID, int, str in
    order); InvalidInput naming `cursor` for anything else (tampered, truncated, another listing's)."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(parts, list) or len(parts) != len(shape):
            raise ValueError("not a cursor")
        return tuple(_part(kind, part) for kind, part in zip(shape, parts, strict=True))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(_NOT_OURS, field="cursor") from exc


def _part(kind: type[CursorPart], part: object) -> CursorPart:
    if kind is int:
        if not isinstance(part, int) or isinstance(part, bool) or not -(2**63) <= part < 2**63:
            raise ValueError("not a bigint")
        return part
    if not isinstance(part, str) or "\x00" in part:
        raise ValueError("not a string the database can compare")
    if kind is datetime:
        instant = datetime.fromisoformat(part)
        if instant.tzinfo is None:
            raise ValueError("a naive time")
        return instant
    if kind is UUID:
        return UUID(part)
    return part
