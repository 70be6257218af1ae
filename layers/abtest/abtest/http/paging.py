"""Query parameters shared by the paged routes (experiments, holdouts, surfaces, the audit log), so every
listing takes `limit` and `cursor` with the same bounds and the same meaning.

A page holds at most `limit` items and may end sooner (the audit log and the experiments listing also
stop at MAX_PAGE_BYTES of JSON); `next_cursor` continues it. Each route keeps its own default.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from abtest.limits import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE, MAX_SURFACES_PAGE_SIZE

__all__ = ["Cursor", "PageLimit", "SurfacesPageLimit"]

_LIMIT = "Items per page at most; a page may hold fewer (follow next_cursor)"

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description=_LIMIT)]
# Surfaces carry their experiments and namespace each: fewer per page.
SurfacesPageLimit = Annotated[int, Query(ge=1, le=MAX_SURFACES_PAGE_SIZE, description=_LIMIT)]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_CURSOR_LENGTH, description="The previous page's next_cursor"),
]
