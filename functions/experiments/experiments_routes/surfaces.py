"""The surfaces' namespaces (which experiment holds which buckets, and the free share) and their config
schemas (immutable versions; abtest.domain.config_schemas)."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from abtest import wiring
from abtest.domain.config_versions import PublishMode, SchemaVersion
from abtest.domain.experiments import SURFACE_PATTERN
from abtest.domain.namespaces import SurfaceNamespace
from abtest.errors import InvalidInput
from abtest.http.actor import current_actor
from abtest.http.app import API_PREFIX, create_router, documented
from abtest.http.paging import Cursor, PageLimit, SurfacesPageLimit
from abtest.http.schemas import SchemaVersionPage, SurfaceList
from abtest.http.scopes import Scope
from abtest.observability import logger, tracer

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


# -- config schemas ---------------------------------------------------------------------------------

SurfaceName = Annotated[str, Path(min_length=1, max_length=64, pattern=SURFACE_PATTERN)]
SCOPES.update(
    {
        "PUT /api/v1/surfaces/{surface}/config-schema": "admin",
        "GET /api/v1/surfaces/{surface}/config-schema": "read",
        "GET /api/v1/surfaces/{surface}/config-schema/versions": "read",
    }
)
# The envelope form of a PUT body: {"schema": {...}, "mode": "warn"} (`schema` is no JSON Schema keyword).
_ENVELOPE = {"schema", "mode"}


@router.put(
    f"{API_PREFIX}/surfaces/<surface>/config-schema", responses=documented(201, SchemaVersion, 409, 415)
)
@tracer.capture_method(capture_response=False)
def publish_config_schema(
    surface: SurfaceName,
    body: Annotated[dict[str, Any], Body(description="A JSON Schema (draft 2020-12), or {schema, mode}")],
    mode: Annotated[
        PublishMode | None,
        Query(
            description="strict (default): 409 if a live experiment violates it; warn: store and list them"
        ),
    ] = None,
) -> Response[SchemaVersion]:
    document, body_mode = body, None
    if "schema" in body and isinstance(body["schema"], dict) and set(body) <= _ENVELOPE:
        document, body_mode = body["schema"], body.get("mode")
    elif "mode" in body:
        document = {k: v for k, v in body.items() if k != "mode"}
        body_mode = body["mode"]
    if body_mode is not None and body_mode not in ("strict", "warn"):
        raise InvalidInput("mode: must be strict or warn", field="mode")
    chosen: PublishMode = body_mode or mode or "strict"
    published = wiring.config_schemas().publish(surface, document, chosen, actor=current_actor(router))
    logger.info(
        "config schema published",
        extra={"surface": surface, "version": published.version, "violations": len(published.violations)},
    )
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=published,
        headers={"Location": f"{API_PREFIX}/surfaces/{surface}/config-schema?version={published.version}"},
    )


@router.get(
    f"{API_PREFIX}/surfaces/<surface>/config-schema",
    responses=documented(200, dict[str, Any], 404),
)
@tracer.capture_method(capture_response=False)
def get_config_schema(
    surface: SurfaceName,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="An older version")] = None,
) -> Response[dict[str, Any]]:
    # The JSON Schema itself (a code generator's input as-is), with its version as x-version and in a header.
    found = wiring.config_schemas().get(surface, version)
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=found.served_document(),
        headers={"X-Config-Schema-Version": str(found.version)},
    )


@router.get(
    f"{API_PREFIX}/surfaces/<surface>/config-schema/versions",
    responses=documented(200, SchemaVersionPage, 404),
)
@tracer.capture_method(capture_response=False)
def list_config_schema_versions(
    surface: SurfaceName, limit: PageLimit = 50, cursor: Cursor = None
) -> SchemaVersionPage:
    listing = wiring.config_schemas().versions(surface, limit=limit, cursor=cursor)
    return SchemaVersionPage(versions=listing.items, next_cursor=listing.next_cursor)
