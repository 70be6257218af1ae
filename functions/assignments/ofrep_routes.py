"""OpenFeature Remote Evaluation Protocol routes (docs/openfeature.md): a flag key is a surface.

Every answer of these routes is in OFREP's shape, never the service's: the body is read here (the
route is `raw_body`), and `refuse_ofrep` reshapes what the entry point refuses before routing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.metrics import MetricUnit

from abtest import wiring
from abtest.domain.assignment import Reason
from abtest.domain.experiments import SURFACE_PATTERN
from abtest.errors import Unavailable
from abtest.http.app import create_router, raw_body, refuse
from abtest.http.body import loads
from abtest.http.ofrep import (
    RETRY_AFTER_SECONDS,
    BulkAnswer,
    EvaluationAnswer,
    EvaluationFailure,
    Failure,
    bulk_evaluation,
    etag,
    etag_matches,
    evaluation,
    failure_answer,
    flag_not_found,
    parse_context,
)
from abtest.http.scopes import Scope
from abtest.observability import cloudwatch, logger

router = create_router()

PREFIX = "/ofrep/v1/evaluate/flags"
SCOPES: dict[str, Scope] = {f"POST {PREFIX}/{{key}}": "evaluate", f"POST {PREFIX}": "evaluate"}

_SURFACE = re.compile(SURFACE_PATTERN)
_NO_STORE = {"Cache-Control": "no-store"}


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={**_NO_STORE, **(headers or {})},
    )


def _overloaded() -> Response[Any]:
    # The protocol's only overload answer: the provider waits Retry-After, then uses the code default.
    cloudwatch.add_metric(name="DatabaseUnavailable", unit=MetricUnit.Count, value=1)
    logger.warning("OFREP evaluation refused: database unavailable")
    return Response(status_code=429, headers={**_NO_STORE, "Retry-After": str(RETRY_AFTER_SECONDS)})


# The body is read by the route itself (raw_body), so Powertools cannot document it: OFREP's request.
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["context"],
                    "additionalProperties": False,
                    "properties": {
                        "context": {
                            "type": "object",
                            "required": ["targetingKey"],
                            "properties": {"targetingKey": {"type": "string", "description": "The user id"}},
                            "additionalProperties": True,
                            "description": "targetingKey and the user's attributes for targeting",
                        }
                    },
                }
            }
        },
    }
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_OVERLOADED = {
    "description": "Database unavailable or overloaded; retry after Retry-After seconds",
    "headers": _RETRY_AFTER,
    "content": {},
}

_DOCUMENTED: Any = {
    200: {"description": "Evaluated", "content": {"application/json": {"model": EvaluationAnswer}}},
    400: {
        "description": "PARSE_ERROR, INVALID_CONTEXT or TARGETING_KEY_MISSING",
        "content": {"application/json": {"model": EvaluationFailure}},
    },
    404: {"description": "FLAG_NOT_FOUND", "content": {"application/json": {"model": EvaluationFailure}}},
    429: _OVERLOADED,
}


@router.post(f"{PREFIX}/<key>", responses=_DOCUMENTED, openapi_extensions=_REQUEST_BODY)
@raw_body
def evaluate_flag(key: str) -> Response[Any]:
    """Evaluate one surface for the context's user (the decision pipeline; an exposure is recorded)."""
    surface = unquote(key)
    try:
        context = parse_context(router.current_event.raw_event)
        if not _SURFACE.match(surface):
            raise flag_not_found(surface)
        try:
            assignment = wiring.assignment_service().evaluate(surface, context.user_id, context.attributes)
            if assignment.reason == Reason.NO_EXPERIMENT and not wiring.namespaces().known(surface):
                raise flag_not_found(surface)
        except Unavailable:
            return _overloaded()
    except Failure as failure:
        return _json(failure.status, failure.body(surface))
    if assignment.exposure_recorded:
        cloudwatch.add_metric(name="ExposureRecorded", unit=MetricUnit.Count, value=1)
    return _json(200, evaluation(surface, assignment))


def refuse_ofrep(event: Mapping[str, Any], route_scopes: Mapping[str, Scope]) -> dict[str, Any] | None:
    """`refuse`, with its answers on the OFREP routes in OFREP's shape: a missing scope stays 403, a
    body that is not JSON is the protocol's malformed request (400 PARSE_ERROR)."""
    answer = refuse(event, route_scopes)
    if answer is None or not str(event.get("routeKey", "")).startswith(f"POST {PREFIX}"):
        return answer
    details = str(loads(answer["body"]).get("message", "refused"))
    key = (event.get("pathParameters") or {}).get("key")
    if answer["statusCode"] == 415:
        return failure_answer(400, "PARSE_ERROR", details, key)
    return failure_answer(answer["statusCode"], "GENERAL", details, key)


_DOCUMENTED_BULK: Any = {
    200: {
        "description": "Every surface with a running experiment, evaluated (a prefetch: no exposure)",
        "headers": {"ETag": {"description": "Derived from the answer", "schema": {"type": "string"}}},
        "content": {"application/json": {"model": BulkAnswer}},
    },
    304: {"description": "Not Modified: the answer's ETag matches If-None-Match", "content": {}},
    400: {
        "description": "PARSE_ERROR, INVALID_CONTEXT or TARGETING_KEY_MISSING",
        "content": {"application/json": {"model": EvaluationFailure}},
    },
    429: _OVERLOADED,
}


@router.post(PREFIX, responses=_DOCUMENTED_BULK, openapi_extensions=_REQUEST_BODY)
@raw_body
def evaluate_flags() -> Response[Any]:
    """Evaluate every surface with a running experiment for the context's user: a client-side prefetch.

    New assignments are stored (sticky) but no exposure is recorded: the app reports one, through the
    events route, when it shows the variant. The ETag is derived from the answer; a matching
    If-None-Match is answered 304 without a body.
    """
    try:
        context = parse_context(router.current_event.raw_event)
        try:
            answers = wiring.assignment_service().evaluate_all(context.user_id, context.attributes)
        except Unavailable:
            return _overloaded()
    except Failure as failure:
        return _json(failure.status, failure.body(None))
    body = bulk_evaluation(answers)
    tag = etag(body)
    # Cached by the client, always revalidated: its provider polls with If-None-Match.
    headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
    if etag_matches(router.current_event.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)
