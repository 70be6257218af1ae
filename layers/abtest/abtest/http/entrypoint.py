"""The one Lambda entry point of every HTTP function: scopes and media type first, then the routes.

Each handler module ends with `lambda_handler = entrypoint(app, ROUTE_SCOPES)`. Traces never record
response bodies (recommendation lists and user ids are not for X-Ray).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.http.app import refuse
from abtest.http.scopes import Scope
from abtest.observability import cloudwatch, logger, tracer
from abtest.snapstart import register as register_snapstart_hooks

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


Refuser = Callable[[Mapping[str, Any], Mapping[str, Scope]], "dict[str, Any] | None"]


def entrypoint(
    app: APIGatewayHttpResolver, route_scopes: Mapping[str, Scope], refuser: Refuser = refuse
) -> LambdaHandler:
    """The Lambda handler for `app`: logging with the request's correlation id, EMF metrics, tracing.

    `refuser` answers a request refused before routing (missing scope, not JSON); a function whose
    routes answer in another error shape (OFREP) passes one that reshapes `refuse`'s answers."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @cloudwatch.log_metrics
    @tracer.capture_lambda_handler(capture_response=False)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return refuser(event, route_scopes) or app.resolve(event, context)

    # SnapStart (where the runtime has its hooks): prime every route before the snapshot, and
    # forget connections, credentials and caches around it (abtest.snapstart).
    register_snapstart_hooks(app, route_scopes)
    return lambda_handler
