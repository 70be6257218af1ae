"""Route scopes, checked in every handler as well as by the API Gateway JWT authorizer (defence in depth).

Scopes: `admin` (experiment writes and status), `read` (reads, metrics, results), `ingest`
(recommendations, assignments, events), `evaluate` (OpenFeature evaluation only: a token shipped in a
client app; `ingest` is accepted wherever `evaluate` is, see ACCEPTED). A token's scope may carry the
stack's resource-server prefix (SCOPE_PREFIX, default "abtest/"), as Cognito issues them: "abtest/admin"
grants "admin", while another API's "billing/admin" does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

from abtest.settings import DEFAULT_SCOPE_PREFIX

Scope = Literal["admin", "read", "ingest", "evaluate"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# The token scopes that satisfy a route's scope (the template's AuthorizationScopes list the same).
ACCEPTED: dict[Scope, tuple[Scope, ...]] = {"evaluate": ("evaluate", "ingest")}


def accepted(required: Scope) -> tuple[Scope, ...]:
    """The scopes any one of which grants a route that needs `required`."""
    return ACCEPTED.get(required, (required,))


def token_scopes(event: Mapping[str, Any]) -> set[str]:
    """Scopes the HTTP API JWT authorizer granted this request (empty if it did not run)."""
    jwt = (event.get("requestContext") or {}).get("authorizer", {}).get("jwt") or {}
    scopes = jwt.get("scopes")
    if scopes is None:
        claims = jwt.get("claims") or {}
        raw = claims.get("scope") or claims.get("scp") or ""
        scopes = raw.split() if isinstance(raw, str) else list(raw)
    return {str(scope) for scope in scopes}


def grants(scopes: Iterable[str], required: Scope, prefix: str = DEFAULT_SCOPE_PREFIX) -> bool:
    """True if one of `scopes` is an accepted scope for `required` (itself, or `ingest` for `evaluate`),
    bare or with `prefix` (the stack's ScopePrefix)."""
    names = {name for ok in accepted(required) for name in (ok, f"{prefix}{ok}")}
    return any(scope in names for scope in scopes)


def missing_scope(
    event: Mapping[str, Any], route_scopes: Mapping[str, Scope], prefix: str = DEFAULT_SCOPE_PREFIX
) -> Scope | None:
    """The scope this request lacks, or None if it may proceed.

    The route is API Gateway's `routeKey` ("POST /api/v1/experiments"): the same key the template
    declares, so an undeclared route has no scope and is refused.
    """
    required = route_scopes.get(str(event.get("routeKey", "")))
    if required is None:
        return "admin"
    return None if grants(token_scopes(event), required, prefix) else required
