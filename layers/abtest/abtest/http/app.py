"""HTTP plumbing shared by every API handler: one resolver factory, one error -> status mapping.

Error bodies are stable and machine-readable:
`{"error": "experiment_not_found", "message": "...", "field": "id"}`; validation errors also carry
`errors`, one entry per problem.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, ResponseBuilder, Route, Router
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abtest.errors import (
    Conflict,
    DomainError,
    ErrorCode,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Unavailable,
)
from abtest.field_path import field_path
from abtest.http.body import BodyError, check_body, dumps, is_plain, loads
from abtest.http.scopes import Scope, missing_scope
from abtest.limits import MAX_BODY_BYTES, MAX_ERRORS
from abtest.observability import cloudwatch, logger
from abtest.settings import get_settings

API_PREFIX = "/api/v1"


class FieldProblem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a message, and the field at fault where one applies."""

    model_config = ConfigDict(extra="allow")

    # Typed str with the codes as its enum: the schema gains the list and nothing else.
    error: str = Field(
        description="Stable machine-readable code, e.g. experiment_not_found",
        json_schema_extra={"enum": [code.value for code in ErrorCode]},
    )
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
    status: int, error: ErrorCode, message: str, field: str | None = None, **extra: Any
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
        return error_response(400, ErrorCode.INVALID_JSON, "the request body is not valid JSON", "body")
    path_problems = [p for p in problems if tuple(p.get("loc", ()))[:1] == ("path",)]
    if path_problems:
        # A path that names nothing (GET /experiments/conversions, an id that is not a UUID) is no
        # resource: 404, not a 422 about a field the client never sent.
        field = field_name(path_problems[0].get("loc", ()))
        return error_response(
            404, ErrorCode.NOT_FOUND, f"no resource at this path ({field} is not valid)", field
        )
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
        ErrorCode.VALIDATION_ERROR,
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
        422, ErrorCode.VALIDATION_ERROR, message, "body", errors=[{"field": "body", "message": message}]
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
    as anything but JSON. Checked here because Powertools validates the body before any middleware,
    and would parse a form or multipart body into confusing errors (or fail on a malformed one). The
    body's limits (abtest.http.body) are Resolver.resolve's first step, for the same reason.
    """
    settings = get_settings()
    if settings.auth_mode != "none":
        scope = missing_scope(event, route_scopes, settings.scope_prefix)
        if scope is not None:
            logger.info(
                "request refused: missing scope", extra={"route": event.get("routeKey"), "scope": scope}
            )
            message = f"this route needs the '{scope}' scope"
            return _proxy_error(
                403, {"error": ErrorCode.INSUFFICIENT_SCOPE, "message": message, "scope": scope}
            )
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").strip().lower()
    media_type = content_type.split(";", 1)[0].strip()  # "application/json; charset=utf-8"
    if event.get("body") and content_type and media_type != "application/json":
        message = _not_json_message(content_type)
        return _proxy_error(
            415, {"error": ErrorCode.UNSUPPORTED_MEDIA_TYPE, "message": message, "field": "content-type"}
        )
    return None


def _body_refused(event: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        check_body(event)
    except BodyError as exc:
        return _proxy_error(exc.status, exc.body())
    return None


# --- hot routes: bodies parsed by pydantic from the JSON text ------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])
_HOT_MARK = "__abtest_hot_route__"
# A body of at most this many characters is at most MAX_BODY_BYTES in UTF-8 (4 bytes per character,
# 3 per lone surrogate): the fast path needs no encoding to know the size limit holds.
_FAST_MAX_CHARS = MAX_BODY_BYTES // 4


def hot_route(func: F) -> F:
    """Mark a route (under its `@app.post(...)`) whose only parameter is `body: SomeModel` as hot.

    A hot route's body is parsed in one step, `SomeModel.model_validate_json(text)`, and the route
    called directly, without the resolver's JSON parse, limit walk, routing and request validation.
    Only a body that this parse accepts takes that path; any other (invalid JSON, a breached limit, a
    validation error, base64, a large body) goes the ordinary way, through check_body and the
    validating resolver, so every error answer is exactly what it was. This is sound because the
    models enforce the body limits themselves (strict types, text without NUL or lone surrogates,
    client JSON values checked by `json_problem`, whose depth is far below MAX_BODY_DEPTH), so a body
    the model accepts passes check_body too (tests/unit/test_hot_routes.py checks both ways agree).
    The route's OpenAPI entry is the one `@app.post` documents, unchanged.
    """
    setattr(func, _HOT_MARK, True)
    return func


_RAW_MARK = "__abtest_raw_body__"


def raw_body(func: F) -> F:
    """Mark a route (under its `@router.post(...)`) that reads and answers about its body itself: the
    resolver skips its body checks (check_body) for it, so none of its answers is in the service's error
    shape (the OFREP routes answer in the protocol's). The route must take no body parameter."""
    setattr(func, _RAW_MARK, True)
    return func


def _route_key(event: Mapping[str, Any]) -> tuple[str, str]:
    http = (event.get("requestContext") or {}).get("http") or {}
    return str(http.get("method", "")).upper(), str(event.get("rawPath", ""))


@dataclass(frozen=True)
class _HotRoute:
    """What a hot route's request needs, worked out once per container when the route registers."""

    route: Route
    func: Callable[..., Any]
    body_model: type[BaseModel]


def _body_model(func: Callable[..., Any]) -> type[BaseModel]:
    target = inspect.unwrap(func)
    names = list(inspect.signature(target).parameters)
    model = get_type_hints(target).get("body")
    if names != ["body"] or not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"hot route {target.__name__}: its only parameter must be `body: SomeModel`")
    return model


class Resolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, with a fast path for hot routes (see `hot_route`).

    Its per-request `context` (the matched route, its arguments) and the event being resolved are kept
    per thread: Lambda runs one request at a time per environment, but the local server runs a
    function's requests on several threads, where one request's clear_context() removed another's
    route mid-validation (a KeyError '_route', a 500, found by bench/bench_load.py), and a handler
    that read its event after a database call could read another thread's (Powertools keeps it on a
    class attribute): its query, its body, its actor. Routers read the event through their resolver."""

    def __init__(self) -> None:
        self._contexts = threading.local()
        super().__init__(enable_validation=True, serializer=dumps, json_body_deserializer=loads)
        self._hot: dict[tuple[str, str], _HotRoute] = {}
        self._raw: set[str] = set()  # route keys ("POST /a/{b}") of `raw_body` routes

    @property
    def context(self) -> dict[str, Any]:
        """This thread's request context (Powertools fills it per request and clears it after)."""
        context: dict[str, Any] | None = getattr(self._contexts, "value", None)
        if context is None:
            context = self._contexts.value = {}
        return context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._contexts.value = value

    @property  # type: ignore[override]
    def current_event(self) -> BaseProxyEvent:
        """This thread's event (Powertools' resolve builds it with `_to_proxy_event`, below)."""
        event: BaseProxyEvent = self._contexts.event
        return event

    @current_event.setter
    def current_event(self, value: BaseProxyEvent) -> None:
        self._contexts.event = value

    def _to_proxy_event(self, event: dict[str, Any]) -> BaseProxyEvent:
        # Called by resolve right before it sets the class-wide attribute, which no reader uses: every
        # read goes through `current_event` above, this thread's.
        proxy: BaseProxyEvent = super()._to_proxy_event(event)
        self._contexts.event = proxy
        return proxy

    def route(self, rule: str, method: Any, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        """Powertools' route registration; also notes hot routes."""
        register = super().route(rule, method, *args, **kwargs)

        def register_route(func: F) -> F:
            registered = register(func)
            if getattr(func, _RAW_MARK, False):
                methods = (method,) if isinstance(method, str) else tuple(method)
                path = re.sub(r"<(\w+)>", r"{\1}", rule)
                self._raw.update(f"{item.upper()} {path}" for item in methods)
            if getattr(func, _HOT_MARK, False):
                model = _body_model(func)
                methods = (method,) if isinstance(method, str) else tuple(method)
                for item in methods:
                    route = next(
                        r
                        for r in self._static_routes
                        if r.func is func and r.method == item.upper() and r.path == rule
                    )
                    self._hot[(item.upper(), rule)] = _HotRoute(route, func, model)
            return registered

        return register_route

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        """Answer a hot route's request directly when its body parses; check any other body's limits
        (400, 413, 422), then resolve as Powertools does."""
        hot = self._hot.get(_route_key(event))
        if hot is not None:
            answer = self._fast(hot, event, context)
            if answer is not None:
                return answer  # a body the model accepts is within the limits (see `hot_route`)
        if str(event.get("routeKey", "")) in self._raw:
            return super().resolve(event, context)
        return _body_refused(event) or super().resolve(event, context)

    def _fast(
        self, hot: _HotRoute, event: Mapping[str, Any], context: LambdaContext
    ) -> dict[str, Any] | None:
        raw = event.get("body")
        if not isinstance(raw, str) or not raw or event.get("isBase64Encoded") or len(raw) > _FAST_MAX_CHARS:
            return None
        if not is_plain(raw):
            return None  # a duplicate key or -0.0: the ordinary path refuses or normalises it
        try:
            body = hot.body_model.model_validate_json(raw)
        except ValidationError:
            return None  # the ordinary path answers with its own, unchanged, error
        # As Powertools' resolve does (the error handlers read the event).
        self._to_proxy_event(dict(event))
        BaseRouter.lambda_context = context
        try:
            try:
                result = hot.func(body=body)
                response = (
                    result
                    if isinstance(result, Response)
                    else Response(
                        status_code=hot.route.status_code,
                        content_type=content_types.APPLICATION_JSON,
                        body=result,
                    )
                )
                if isinstance(response.body, BaseModel):
                    # What the validating resolver's response serialisation gives (then `dumps`).
                    response.body = response.body.model_dump(mode="json", by_alias=True)
                builder: ResponseBuilder[Any] = ResponseBuilder(
                    response, serializer=self._serializer, route=hot.route
                )
            except Exception as exc:
                handled = self._call_exception_handler(exc, hot.route)
                if handled is None:
                    raise
                builder = handled
            return self._build_response(builder)
        finally:
            self.clear_context()  # type: ignore[no-untyped-call]


def create_app() -> Resolver:
    """An HTTP API (v2) resolver with request validation and the service's error mapping."""
    app = Resolver()

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[dict[str, Any]]:
        return _validation_response(exc)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        content_type = app.current_event.headers.get("content-type", "")
        return error_response(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, _not_json_message(content_type), "content-type"
        )

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(_exc: UnicodeDecodeError) -> Response[dict[str, Any]]:
        # Powertools decodes the body lazily; bytes that are not UTF-8 cannot be JSON.
        return error_response(
            400, ErrorCode.INVALID_JSON, "the request body is not UTF-8 encoded JSON", "body"
        )

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
            404,
            ErrorCode.ROUTE_NOT_FOUND,
            f"no route for {app.current_event.http_method} {app.current_event.path}",
        )

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[dict[str, Any]]:
        # The detail goes to the log (with the correlation id), never to the client.
        logger.exception("unhandled error")
        return error_response(500, ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")

    return app


def create_router() -> Router:
    """A Powertools Router for one resource's routes; its handler includes it (`app.include_router`),
    which registers each route through the resolver (hot routes included) and its error mapping."""
    return Router()  # type: ignore[no-untyped-call]  # Powertools' constructor is unannotated
