"""template.yaml, the handlers and the local server's route table agree."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

from localdev.postgres import PROJECT_ROOT
from localdev.template import Route, http_routes, layer_paths, load_template, match


def _handler_routes(route: Route) -> set[tuple[str, str]]:
    route.load()
    module = importlib.import_module(route.handler.rpartition(".")[0])
    schema = module.app.get_openapi_schema()
    return {
        (method.upper(), path)
        for path, item in schema.paths.items()
        for method in item.model_dump(exclude_none=True)
    }


def test_every_template_route_is_served_by_its_handler_and_vice_versa() -> None:
    routes = http_routes()
    assert routes, "template.yaml declares no HttpApi routes"
    by_function: dict[str, set[tuple[str, str]]] = {}
    for route in routes:
        by_function.setdefault(route.handler, set()).add((route.method, route.path))
    for handler, declared in by_function.items():
        served = _handler_routes(next(r for r in routes if r.handler == handler))
        assert declared == served, f"{handler}: template {sorted(declared)} != handler {sorted(served)}"


def test_every_function_handler_imports_to_a_callable() -> None:
    resources = load_template()["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions
    for logical_id, resource in functions.items():
        code_uri = PROJECT_ROOT / resource["Properties"]["CodeUri"]
        module = resource["Properties"]["Handler"].rpartition(".")[0]
        assert (code_uri / f"{module}.py").is_file(), logical_id
        route = Route("GET", "/", logical_id, code_uri, resource["Properties"]["Handler"])
        assert callable(route.load())


def test_no_greedy_proxy_routes() -> None:
    assert all("+}" not in route.path for route in http_routes())


def test_layer_is_laid_out_for_sam_build() -> None:
    (layer,) = layer_paths()
    assert (layer / "requirements.txt").is_file()
    assert (layer / "abtest" / "__init__.py").is_file()
    assert not (layer / "python").exists(), "BuildMethod python3.x layers must not nest a python/ folder"


def _names(requirements: list[str]) -> dict[str, str]:
    return {re.split(r"[<>=\[ ]", line, maxsplit=1)[0].lower(): line for line in requirements}


def test_layer_requirements_match_the_project_dependencies() -> None:
    layer_lines = [
        line.strip()
        for line in (layer_paths()[0] / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    project = tomllib.loads(Path(PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {name: line for name, line in _names(project).items() if name != "boto3"}
    assert _names(layer_lines) == runtime


def test_literal_segments_beat_parameters() -> None:
    routes = [
        Route("GET", "/api/v1/experiments/{experiment_id}", "A", PROJECT_ROOT, "m.f"),
        Route("GET", "/api/v1/experiments/special", "B", PROJECT_ROOT, "m.f"),
    ]
    found = match(routes, "GET", "/api/v1/experiments/special")
    assert found is not None
    assert found[0].function == "B"
    found = match(routes, "GET", "/api/v1/experiments/123")
    assert found is not None
    assert (found[0].function, found[1]) == ("A", {"experiment_id": "123"})
    assert match(routes, "POST", "/api/v1/experiments/123") is None
    assert match(routes, "GET", "/api/v1/experiments/1/2") is None
