"""The caller's identity for the audit log: who makes a request's changes, and why.

In AWS the HTTP API's JWT authorizer verifies the token and hands its claims to the handler in
`requestContext.authorizer.jwt.claims`; the actor is the token's subject (`sub`), falling back to
`client_id` or `username` for tokens without one. Without an authorizer (the local server's default
"local, no auth" mode, `make run`), the actor is `local`. The optional `X-Change-Reason` header
becomes the entries' `reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

from abtest.domain.audit import LOCAL_ACTOR, Actor
from abtest.errors import InvalidInput
from abtest.http.scopes import token_scopes
from abtest.limits import MAX_AUDIT_ID_LENGTH, MAX_REASON_LENGTH, text_problem

REASON_HEADER = "X-Change-Reason"


def change_reason(headers: Mapping[str, Any]) -> str | None:
    """The request's X-Change-Reason (trimmed; None if absent or blank); InvalidInput if unusable."""
    raw = next((value for name, value in headers.items() if str(name).lower() == REASON_HEADER.lower()), None)
    if raw is None or not str(raw).strip():
        return None
    reason = str(raw).strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(
            f"{REASON_HEADER} is {len(reason)} characters; the limit is {MAX_REASON_LENGTH}",
            field=REASON_HEADER,
        )
    problem = text_problem(reason)
    if problem is not None:
        raise InvalidInput(f"{REASON_HEADER}: {problem}", field=REASON_HEADER)
    return reason


def _claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    text = str(value).strip() if value is not None else ""
    return text[:MAX_AUDIT_ID_LENGTH] or None


def request_actor(event: Mapping[str, Any]) -> Actor:
    """The actor of an API Gateway HTTP API (v2) event: see the module docstring.

    A token whose subject equals its `client_id` (Cognito's client-credentials tokens) or that has only
    a `client_id` is a `client`; any other subject a `user`. A token naming nobody is `user` `unknown`.
    """
    context = event.get("requestContext") or {}
    request_id = context.get("requestId")
    reason = change_reason(event.get("headers") or {})
    jwt = (context.get("authorizer") or {}).get("jwt")
    if not isinstance(jwt, Mapping):
        return LOCAL_ACTOR.model_copy(update={"request_id": request_id, "reason": reason})
    claims = jwt.get("claims") or {}
    subject, client_id = _claim(claims, "sub"), _claim(claims, "client_id")
    who = subject or client_id or _claim(claims, "username") or "unknown"
    kind = "client" if client_id is not None and who == client_id else "user"
    return Actor(
        type=kind,
        id=who,
        scopes=tuple(sorted(token_scopes(event))),
        request_id=request_id,
        reason=reason,
    )


def current_actor(app: BaseRouter) -> Actor:
    """The actor of the request `app` (a resolver or one of its routers) is resolving (call it before
    any write: it may raise a 422)."""
    return request_actor(app.current_event.raw_event)
