"""One Router per resource: each router module of the experiments function declares the scope of
exactly the routes it registers, and the handler registers none of its own (it only includes them)."""

from __future__ import annotations

import ast
import importlib
import re
from types import ModuleType

import pytest

from localdev.postgres import PROJECT_ROOT
from localdev.template import use_function_folders

use_function_folders()

ROUTES = PROJECT_ROOT / "functions" / "experiments" / "experiments_routes"
HANDLER = PROJECT_ROOT / "functions" / "experiments" / "experiments_handler.py"
ROUTER_MODULES = sorted(path.stem for path in ROUTES.glob("*.py") if path.stem != "__init__")


def route_keys(module: ModuleType) -> set[str]:
    """ "METHOD /path/{param}" of every route the module's router registers, as template.yaml names them."""
    keys = set()
    for rule, methods, *_ in module.router._routes:
        path = re.sub(r"<(\w+)>", r"{\1}", rule)
        keys.update(f"{method.upper()} {path}" for method in methods)
    return keys


@pytest.mark.parametrize("name", ROUTER_MODULES)
def test_each_router_declares_the_scope_of_exactly_its_routes(name: str) -> None:
    module = importlib.import_module(f"experiments_routes.{name}")
    assert route_keys(module), f"{name} registers no route"
    assert set(module.SCOPES) == route_keys(module)


def test_the_handler_includes_every_router_and_routes_nothing_itself() -> None:
    handler = importlib.import_module("experiments_handler")
    assert sorted(module.__name__.rpartition(".")[2] for module in handler.RESOURCES) == ROUTER_MODULES
    decorated = [
        node.name
        for node in ast.walk(ast.parse(HANDLER.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.decorator_list
    ]
    assert decorated == []
    included = set().union(*(route_keys(module) for module in handler.RESOURCES))
    assert set(handler.ROUTE_SCOPES) == included
