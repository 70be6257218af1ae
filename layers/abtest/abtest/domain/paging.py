"""One page of a keyset listing as a repository returns it; the HTTP views (abtest.http.schemas) name
the items after their resource (`experiments`, `holdouts`, `events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class Listing(Generic[Item]):
    """Items in listing order, and the opaque cursor of the next page (None: this is the last)."""

    items: list[Item]
    next_cursor: str | None
