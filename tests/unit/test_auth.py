"""Route scopes: token parsing, prefix handling, and the template declaring what handlers enforce."""

from __future__ import annotations

import importlib

import pytest

from abtest.http.scopes import accepted, grants, missing_scope, token_scopes
from abtest.settings import DEFAULT_SCOPE_PREFIX as P
from localdev.auth import authorizer_context, development_token
from localdev.template import http_routes, load_template


def event(route_key: str, scopes: list[str] | None = None, claim: str | None = None) -> dict[str, object]:
    jwt: dict[str, object] = {"claims": {"scope": claim} if claim is not None else {}}
    if scopes is not None:
        jwt["scopes"] = scopes
    return {"routeKey": route_key, "requestContext": {"authorizer": {"jwt": jwt}}}


def test_scopes_come_from_the_authorizer_list_or_the_scope_claim() -> None:
    assert token_scopes(event("x", scopes=[P + "read"])) == {P + "read"}
    assert token_scopes(event("x", claim=f"{P}read {P}ingest")) == {P + "read", P + "ingest"}
    assert token_scopes({"routeKey": "x", "requestContext": {}}) == set()


@pytest.mark.parametrize(
    ("scopes", "required", "ok"),
    [
        ({"admin"}, "admin", True),
        ({P + "admin"}, "admin", True),
        ({P + "read"}, "admin", False),
        ({"billing/admin"}, "admin", False),
        ({"superadmin"}, "admin", False),
        (set(), "read", False),
    ],
)
def test_grants(scopes: set[str], required: str, ok: bool) -> None:
    assert grants(scopes, required) is ok  # type: ignore[arg-type]


def test_unknown_routes_are_refused() -> None:
    assert missing_scope(event("GET /elsewhere", scopes=[P + "admin"]), {"GET /x": "read"}) == "admin"
    assert missing_scope(event("GET /x", scopes=[P + "read"]), {"GET /x": "read"}) is None
    assert missing_scope(event("GET /x", scopes=[P + "ingest"]), {"GET /x": "read"}) == "read"


def test_handlers_enforce_exactly_the_scopes_the_template_declares() -> None:
    template = load_template()
    resources = template["Resources"]
    for route in http_routes(template):
        route.load()
        module = importlib.import_module(route.handler.rpartition(".")[0])
        declared = next(
            e["Properties"]["Auth"]
            for e in resources[route.function]["Properties"]["Events"].values()
            if e["Type"] == "HttpApi"
            and e["Properties"]["Path"] == route.path
            and e["Properties"]["Method"].upper() == route.method
        )
        assert declared["Authorizer"] == "JwtAuthorizer"
        # A route needing `evaluate` lists every scope that grants it (`ingest` too): the authorizer
        # lets in a token with any one of them, as the handler does.
        wanted = accepted(module.ROUTE_SCOPES[route.route_key])
        expected = [{"Fn::Sub": "${ScopePrefix}" + scope} for scope in wanted]
        assert declared["AuthorizationScopes"] == expected, route.route_key
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        module_name = resource["Properties"]["Handler"].rpartition(".")[0]
        keys = {r.route_key for r in http_routes(template) if r.function == logical_id}
        if keys:
            assert set(importlib.import_module(module_name).ROUTE_SCOPES) == keys, logical_id


def test_development_tokens_round_trip() -> None:
    context = authorizer_context(f"Bearer {development_token(['read', 'ingest'])}")
    assert context is not None
    assert context["jwt"]["scopes"] == [P + "read", P + "ingest"]
    assert authorizer_context(None) is None
    assert authorizer_context("Bearer not-a-token") is None
    assert authorizer_context("Basic abc") is None


def test_the_template_default_scope_prefix_is_the_code_default() -> None:
    # One prefix: the stack parameter's default and the handlers' default must not drift apart.
    assert load_template()["Parameters"]["ScopePrefix"]["Default"] == P
