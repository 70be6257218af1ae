"""HTTP plumbing shared by every API handler: one resolver factory, one error -> status mapping.

Error bodies are stable and machine-readable:
`{"error": "experiment_not_found", "message": "...", "field": "id"}`; validation errors also carry
`errors`, one entry per problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from abtest.errors import Conflict, DomainError, InvalidInput, InvalidTransition, NotFound, Unavailable
from abtest.field_path import field_path
from abtest.http.limits import MAX_ERRORS, BodyError, check_body, dumps, loads
from abtest.http.scopes import Scope, missing_scope
from abtest.observability import cloudwatch, logger
from abtest.settings import get_settings

API_PREFIX = "/api/v1"


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a message, and the field at fault where one applies."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Stable machine-readable code, e.g. experiment_not_found")
    message: str
    field: str | None = None
    errors: list[FieldProblem] | None = Field(default=None, description="Every validation problem")


_ERROR_DESCRIPTIONS = {
    400: "Malformed JSON",
    413: "The body exceeds the size limit",
    403: "The token lacks the route's scope",
    404: "Not found",
    409: "Conflicts with the stored state",
    415: "The body is not JSON",
    422: "Invalid input; `field` names it",
    503: "Database unavailable; retry",
}


def documented(status: int, model: Any, *errors: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route: its success and the errors it can answer (403, 422 and 503 always)."""
    responses: dict[int, OpenAPIResponse] = {}
    if model is None:
        responses[status] = {"description": "Success, no content"}
    else:
        responses[status] = {"description": "Success", "content": {"application/json": {"model": model}}}
    # Routes that take a body (those answering 415) also answer 413 past the body size limit.
    body_errors = {413} if 415 in errors else set()
    for code in sorted({403, 422, 503, *errors, *body_errors}):
        responses[code] = {
            "description": _ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses


def documented_html(*errors: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI responses of a route answering an HTML page (errors stay JSON)."""
    responses = documented(200, None, *errors)
    responses[200] = {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}
    return responses


def html_response(page: str) -> Response[str]:
    """A 200 answer with an HTML page."""
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=page)


def error_response(
    status: int, error: str, message: str, field: str | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    """A JSON error response in the service's one error shape."""
    body: dict[str, Any] = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def field_name(loc: Sequence[Any]) -> str:
    """Turn a pydantic error location into a field path: ("body", "variants", 1, "weight") ->
    "variants[1].weight"; the leading "body"/"query"/"path" part is dropped."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    return field_path(parts) or "body"


def _validation_response(exc: RequestValidationError) -> Response[dict[str, Any]]:
    problems = list(exc.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "invalid_json", "the request body is not valid JSON", "body")
    path_problems = [p for p in problems if tuple(p.get("loc", ()))[:1] == ("path",)]
    if path_problems:
        # A path that names nothing (GET /experiments/conversions, an id that is not a UUID) is no
        # resource: 404, not a 422 about a field the client never sent.
        field = field_name(path_problems[0].get("loc", ()))
        return error_response(404, "not_found", f"no resource at this path ({field} is not valid)", field)
    details = []
    # The first MAX_ERRORS problems: a body with 200,000 unknown keys must not get a 12 MB answer.
    for problem in problems[:MAX_ERRORS]:
        message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
        if problem.get("type") == "missing" and tuple(problem.get("loc", ())) == ("body",):
            message = "a JSON request body is required"
        details.append({"field": field_name(problem.get("loc", ())), "message": message})
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    return error_response(
        422,
        "validation_error",
        f"{first['field']}: {first['message']}",
        first["field"],
        errors=details,
        error_count=len(problems),
    )


def _not_json_message(content_type: str) -> str:
    return f"request bodies must be JSON (Content-Type: application/json), not {content_type}"


def _invalid_body(message: str) -> Response[dict[str, Any]]:
    """A 422 for a body the schema accepted but that cannot be used as it is."""
    return error_response(
        422, "validation_error", message, "body", errors=[{"field": "body", "message": message}]
    )


def _proxy_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": dumps(body),
        "isBase64Encoded": False,
    }


def refuse(event: Mapping[str, Any], route_scopes: Mapping[str, Scope]) -> dict[str, Any] | None:
    """The proxy response for a request refused before routing, or None to go on.

    403 when the token lacks the route's scope (unless AUTH_MODE=none); 415 when a body is sent
    as anything but JSON; 400, 413 or 422 when the body breaks the limits of abtest.http.limits.
    Checked here because Powertools validates the body before any middleware, and would parse a
    form or multipart body into confusing errors (or fail on a malformed one).
    """
    settings = get_settings()
    if settings.auth_mode != "none":
        scope = missing_scope(event, route_scopes, settings.scope_prefix)
        if scope is not None:
            logger.info(
                "request refused: missing scope", extra={"route": event.get("routeKey"), "scope": scope}
            )
            message = f"this route needs the '{scope}' scope"
            return _proxy_error(403, {"error": "insufficient_scope", "message": message, "scope": scope})
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").strip().lower()
    media_type = content_type.split(";", 1)[0].strip()  # "application/json; charset=utf-8"
    if event.get("body") and content_type and media_type != "application/json":
        message = _not_json_message(content_type)
        return _proxy_error(
            415, {"error": "unsupported_media_type", "message": message, "field": "content-type"}
        )
    try:
        check_body(event)
    except BodyError as exc:
        return _proxy_error(exc.status, exc.body())
    return None


def create_app() -> APIGatewayHttpResolver:
    """An HTTP API (v2) resolver with request validation and the service's error mapping."""
    app = APIGatewayHttpResolver(enable_validation=True, serializer=dumps, json_body_deserializer=loads)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[dict[str, Any]]:
        return _validation_response(exc)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        content_type = app.current_event.headers.get("content-type", "")
        return error_response(415, "unsupported_media_type", _not_json_message(content_type), "content-type")

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(_exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
        # Powertools decodes the body lazily; bytes that are not UTF-8 cannot be JSON.
        return error_response(400, "invalid_json", "the request body is not UTF-8 encoded JSON", "body")

    @app.exception_handler(UnicodeEncodeError)
    def _not_encodable(_exc: UnicodeEncodeError) -> Response[dict[str, Any]]:
        # JSON may carry lone surrogates ("\ud800") that no UTF-8 database column can store.
        return _invalid_body("text fields must be valid Unicode (no lone surrogates)")

    @app.exception_handler(InvalidInput)
    def _invalid_input(exc: InvalidInput) -> Response[dict[str, Any]]:
        # A domain check that found several problems lists them in details (errors, error_count).
        details = dict(exc.details)
        errors = details.pop("errors", None) or [{"field": exc.field or "body", "message": exc.message}]
        return error_response(422, exc.code, exc.message, exc.field, errors=errors, **details)

    @app.exception_handler(NotFound)
    def _not_found(exc: NotFound) -> Response[dict[str, Any]]:
        return error_response(404, exc.code, exc.message, exc.field)

    @app.exception_handler(InvalidTransition)
    def _invalid_transition(exc: InvalidTransition) -> Response[dict[str, Any]]:
        return error_response(409, exc.code, exc.message, exc.field, current=exc.current, allowed=exc.allowed)

    @app.exception_handler(Conflict)
    def _conflict(exc: Conflict) -> Response[dict[str, Any]]:
        return error_response(409, exc.code, exc.message, exc.field, **exc.details)

    @app.exception_handler(Unavailable)
    def _unavailable(exc: Unavailable) -> Response[dict[str, Any]]:
        cloudwatch.add_metric(name="DatabaseUnavailable", unit=MetricUnit.Count, value=1)
        logger.warning("database unavailable", extra={"reason": exc.message})
        response = error_response(503, exc.code, exc.message)
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(DomainError)
    def _domain_error(exc: DomainError) -> Response[dict[str, Any]]:
        return error_response(400, exc.code, exc.message, exc.field)

    @app.not_found
    def _no_route(_exc: Exception) -> Response[dict[str, Any]]:
        return error_response(
            404, "route_not_found", f"no route for {app.current_event.http_method} {app.current_event.path}"
        )

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[dict[str, Any]]:
        # The detail goes to the log (with the correlation id), never to the client.
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred")

    return app
