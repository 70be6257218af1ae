"""One OpenAPI document for the whole API, generated from the handlers' own resolvers.

Each function's Powertools resolver describes its routes; this merges them, adds the JWT security
scheme with each route's scope, and writes `openapi.json` (checked in; a test fails when it is stale:
run `make openapi`). The local server serves it at /api/v1/openapi.json.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from abtest.http.scopes import accepted
from localdev.postgres import PROJECT_ROOT
from localdev.template import http_routes

SPEC_PATH = PROJECT_ROOT / "openapi.json"
TITLE = "abtest: serverless A/B testing API"
VERSION = "1.0.0"


def build_spec() -> dict[str, Any]:
    """The merged OpenAPI document (deterministic: sorted paths and schemas)."""
    routes = http_routes()
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    modules = {}
    for route in routes:
        route.load()
        modules[route.handler] = importlib.import_module(route.handler.rpartition(".")[0])
    for module in modules.values():
        part = json.loads(module.app.get_openapi_json_schema(title=TITLE, version=VERSION))
        for path, operations in part.get("paths", {}).items():
            paths.setdefault(path, {}).update(operations)
        for name, schema in part.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two handlers define different schemas named {name}")
            schemas[name] = schema
    for route in routes:
        scope = modules[route.handler].ROUTE_SCOPES[route.route_key]
        operation = paths[route.path][route.method.lower()]
        operation["security"] = [{"jwt": []}]
        operation["x-required-scope"] = scope
        if route.path.startswith("/ofrep/"):
            # The OFREP routes read their body themselves: a bad one is OFREP's 400, never the 422 that
            # Powertools documents for every validated route.
            operation["responses"].pop("422", None)
        operation["summary"] = f"{route.method} {route.path} (scope: {' or '.join(accepted(scope))})"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Experiments, assignment, recommendations, events and metrics. Every route needs "
            "a JWT (API Gateway JWT authorizer) carrying the route's scope: admin, read, ingest or evaluate "
            "(OpenFeature evaluation).",
        },
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {
            "schemas": {name: schemas[name] for name in sorted(schemas)},
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write(path: Path = SPEC_PATH) -> None:
    """Regenerate the checked-in spec."""
    path.write_text(render(build_spec()), encoding="utf-8")
