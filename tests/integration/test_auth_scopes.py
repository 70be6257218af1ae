"""Every route refuses a token without its scope (403 JSON) and does nothing; the right scope passes."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from abtest.http.scopes import SCOPES, accepted
from abtest.settings import DEFAULT_SCOPE_PREFIX as PREFIX
from localdev.template import http_routes
from tests.integration.conftest import call
from tests.integration.test_experiments_api import BASE, experiment_body

SAMPLE_ID = "00000000-0000-4000-8000-000000000000"
ROUTES = http_routes()


def _required(route: Any) -> str:
    route.load()
    scope: str = importlib.import_module(route.handler.rpartition(".")[0]).ROUTE_SCOPES[route.route_key]
    return scope


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.route_key)
def test_a_token_without_the_scope_is_refused(clean_db: str, sql: Any, route: Any) -> None:
    required = _required(route)
    others = tuple(f"{PREFIX}{s}" for s in SCOPES if s not in accepted(required))  # type: ignore[arg-type]
    path = route.path.replace("{experiment_id}", SAMPLE_ID).replace("{user_id}", "u1")
    body = experiment_body() if route.method in ("POST", "PUT", "PATCH") else None

    response = call(route.method, path, body, scopes=others)

    assert response.status == 403, response
    if route.path.startswith("/ofrep/"):  # OFREP's error shape on its routes (docs/openfeature.md)
        assert response.json["errorCode"] == "GENERAL"
        assert required in response.json["errorDetails"]
    else:
        assert response.json["error"] == "insufficient_scope"
        assert response.json["scope"] == required
    assert sql("SELECT count(*) FROM experiments") == [(0,)]


def test_no_token_at_all_is_refused(clean_db: str) -> None:
    assert call("GET", BASE, scopes=()).status == 403


def test_the_right_scope_is_enough(clean_db: str) -> None:
    created = call("POST", BASE, experiment_body(), scopes=(f"{PREFIX}admin",))
    assert created.status == 201
    assert call("GET", f"{BASE}/{created.json['id']}", scopes=("read",)).status == 200
    assert (
        call("POST", "/api/v1/recommendations", {"user_id": "u"}, scopes=(f"{PREFIX}ingest",)).status == 200
    )
