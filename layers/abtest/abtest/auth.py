"""Route scopes, checked in every handler as well as by the API Gateway JWT authorizer (defence in depth).

Scopes: `admin` (experiment writes and status), `read` (reads, metrics, results), `ingest`
(recommendations, assignments, events). A token's scope may carry a resource-server prefix, as
Cognito issues them ("abtest/admin" grants "admin").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

Scope = Literal["admin", "read", "ingest"]


def token_scopes(event: Mapping[str, Any]) -> set[str]:
    """Scopes the HTTP API JWT authorizer granted this request (empty if it did not run)."""
    jwt = (event.get("requestContext") or {}).get("authorizer", {}).get("jwt") or {}
    scopes = jwt.get("scopes")
    if scopes is None:
        claims = jwt.get("claims") or {}
        raw = claims.get("scope") or claims.get("scp") or ""
        scopes = raw.split() if isinstance(raw, str) else list(raw)
    return {str(scope) for scope in scopes}


def grants(scopes: Iterable[str], required: Scope) -> bool:
    """True if one of `scopes` is `required` itself or `<prefix>/required`."""
    return any(scope == required or scope.endswith(f"/{required}") for scope in scopes)


def missing_scope(event: Mapping[str, Any], route_scopes: Mapping[str, Scope]) -> Scope | None:
    """The scope this request lacks, or None if it may proceed.

    The route is API Gateway's `routeKey` ("POST /api/v1/experiments"): the same key the template
    declares, so an undeclared route has no scope and is refused.
    """
    required = route_scopes.get(str(event.get("routeKey", "")))
    if required is None:
        return "admin"
    return None if grants(token_scopes(event), required) else required
