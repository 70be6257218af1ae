"""The surfaces' namespaces: which experiment holds which buckets, and the free share."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from abtest import wiring
from abtest.domain.experiments import SURFACE_PATTERN
from abtest.domain.namespaces import SurfaceNamespace
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, SurfacesPageLimit
from abtest.http.schemas import SurfaceList
from abtest.http.scopes import Scope
from abtest.observability import tracer

router = create_router()

# The scope each route needs (the template's JWT authorizer declares the same; a test checks it).
SCOPES: dict[str, Scope] = {
    "GET /api/v1/surfaces": "read",
    "GET /api/v1/surfaces/{surface}": "read",
}


@router.get(f"{API_PREFIX}/surfaces", responses=documented(200, SurfaceList))
@tracer.capture_method(capture_response=False)
def list_surfaces(
    limit: SurfacesPageLimit = 10,
    cursor: Cursor = None,
) -> SurfaceList:
    # Paged: one surface can weigh kilobytes (its experiments and bucket ranges).
    surfaces, next_cursor = wiring.namespaces().surface_page(limit=limit, cursor=cursor)
    return SurfaceList(surfaces=surfaces, next_cursor=next_cursor)


@router.get(f"{API_PREFIX}/surfaces/<surface>", responses=documented(200, SurfaceNamespace, 404))
@tracer.capture_method(capture_response=False)
def get_surface(
    surface: Annotated[str, Path(min_length=1, max_length=64, pattern=SURFACE_PATTERN)],
) -> SurfaceNamespace:
    return wiring.namespaces().surface(surface)
