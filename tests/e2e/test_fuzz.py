"""Schemathesis against the local server, driven by the generated OpenAPI spec: no 5xx, ever, and
every 4xx is a JSON error in the service's shape. Bounded and derandomized so CI is repeatable."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from localdev.openapi import build_spec
from tests.e2e.conftest import Http

schema = schemathesis.openapi.from_dict(build_spec())


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_json_client_errors(case: Any, server: Http) -> None:
    response = case.call(base_url=server.base_url, timeout=30)

    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict)
        assert isinstance(body.get("error"), str), body
        assert isinstance(body.get("message"), str), body
    elif response.status_code != 204:
        headers = {name.lower(): value for name, value in response.headers.items()}
        content_type = headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        # The report pages answer HTML (as their OpenAPI responses say); everything else JSON.
        expected = "text/html" if case.path.endswith("/report") else "application/json"
        assert content_type.startswith(expected)
        if expected == "text/html":
            assert response.text.startswith("<!DOCTYPE html>")
        else:
            response.json()
