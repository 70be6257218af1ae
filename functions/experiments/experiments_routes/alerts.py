"""Alerts: the listing (filter by experiment and kind) and the digest page."""

from datetime import UTC, datetime
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from abtest import wiring
from abtest.domain.alerts import AlertKind, DigestSchedule
from abtest.domain.digests import period_start
from abtest.http.app import API_PREFIX, create_router, documented, documented_html, html_response
from abtest.http.paging import Cursor, PageLimit
from abtest.http.schemas import AlertPage
from abtest.http.scopes import Scope
from abtest.observability import tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "GET /api/v1/alerts": "read",
    "GET /api/v1/digest": "read",
}


@router.get(f"{API_PREFIX}/alerts", responses=documented(200, AlertPage))
@tracer.capture_method(capture_response=False)
def list_alerts(
    experiment_id: Annotated[str | None, Query(description="Only this experiment's alerts (UUID)")] = None,
    kind: Annotated[AlertKind | None, Query(description="Only alerts of this kind")] = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> AlertPage:
    from uuid import UUID

    from abtest.errors import InvalidInput

    experiment: UUID | None = None
    if experiment_id is not None:
        try:
            experiment = UUID(experiment_id)
        except ValueError:
            raise InvalidInput("experiment_id: not a UUID", field="experiment_id") from None
    listing = wiring.alerts().page(experiment_id=experiment, kind=kind, limit=limit, cursor=cursor)
    return AlertPage(alerts=listing.items, next_cursor=listing.next_cursor)


@router.get(f"{API_PREFIX}/digest", responses=documented_html())
@tracer.capture_method(capture_response=False)
def digest(
    every: Annotated[
        Literal["day", "week"], Query(description="The period: the last 24 hours or the last 7 days")
    ] = "day",
) -> Response[str]:
    # Jinja2 and the report's filters load with the first page, not on this function's cold start.
    from abtest.analysis.digest_page import digest_page

    now = datetime.now(UTC)
    schedule = DigestSchedule(every=every, hour_utc=now.hour)
    page = digest_page(wiring.alerts().digest(period_start(schedule, now), now), every=every)
    return html_response(page)
