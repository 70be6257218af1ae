"""Helpers for calling handlers in-process with real API Gateway HTTP API v2 events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from abtest.http.scopes import SCOPES
from abtest.settings import DEFAULT_SCOPE_PREFIX
from localdev.lambda_events import LocalLambdaContext, http_api_event
from localdev.template import Route, http_routes, match

ROUTES = http_routes()


class ApiResponse:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.status = raw["statusCode"]
        self.headers = raw.get("headers") or {}
        body = raw.get("body")
        self.text: str = body or ""
        html = str(self.headers.get("Content-Type", "")).startswith("text/html")
        self.json: Any = json.loads(body) if body and not html else None

    def __repr__(self) -> str:
        return f"ApiResponse({self.status}, {self.json!r})"


ALL_SCOPES = tuple(DEFAULT_SCOPE_PREFIX + scope for scope in SCOPES)


def authorizer(scopes: tuple[str, ...]) -> dict[str, Any]:
    """The context API Gateway's JWT authorizer adds for a token with these scopes."""
    claims = {"sub": "test-client", "scope": " ".join(scopes), "iss": "https://issuer.example"}
    return {"jwt": {"claims": claims, "scopes": list(scopes)}}


def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    query: str = "",
    raw_body: str | None = None,
    scopes: tuple[str, ...] = ALL_SCOPES,
) -> ApiResponse:
    """Route like API Gateway (from template.yaml) and invoke the handler with a v2 event."""
    found = match(ROUTES, method, path)
    assert found is not None, f"template.yaml has no route for {method} {path}"
    route, params = found
    payload = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    event = http_api_event(
        method,
        path,
        route_key=route.route_key,
        path_parameters=params,
        query=query,
        headers={"content-type": "application/json"},
        body=payload,
        authorizer=authorizer(scopes),
    )
    return ApiResponse(route.load()(event, LocalLambdaContext(function_name=route.function)))


def handler_for(route: Route) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    return route.load()


@pytest.fixture
def api(clean_db: str) -> Callable[..., ApiResponse]:
    return call


@pytest.fixture
def sql(clean_db: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run a query against the test database and return its rows."""

    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(clean_db, autocommit=True) as conn:
            return conn.execute(query.encode(), params).fetchall()

    return run
