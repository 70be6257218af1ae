"""Read the HTTP routes and handlers from template.yaml: the local server's only route table.

Because the local server routes exactly what the SAM template declares, the two cannot drift.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

from localdev.postgres import PROJECT_ROOT

TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that accepts CloudFormation's short-form intrinsic functions (!Ref, !Sub, ...)."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The SAM template as plain data (intrinsic functions become {"Fn::X": ...} dicts)."""
    with path.open(encoding="utf-8") as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template


@dataclass(frozen=True)
class Route:
    """One HTTP API route of the template and the function that serves it."""

    method: str
    path: str  # API Gateway syntax, e.g. /api/v1/experiments/{id}
    function: str  # logical id in the template
    code_uri: Path
    handler: str  # module.function

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")

    @property
    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers literal segments over parameters: more literals win."""
        segments = self.path.strip("/").split("/")
        literals = sum(1 for segment in segments if not segment.startswith("{"))
        return (literals, len(segments))

    def load(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """Import the handler as Lambda would, with the function folders on the path."""
        use_function_folders()
        module_name, _, attribute = self.handler.rpartition(".")
        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = getattr(
            importlib.import_module(module_name), attribute
        )
        return handler


def http_routes(template: dict[str, Any] | None = None) -> list[Route]:
    """Every HttpApi event of every function in the template."""
    template = template if template is not None else load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    routes = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        code_uri = PROJECT_ROOT / properties.get("CodeUri", globals_.get("CodeUri", "."))
        handler = properties.get("Handler", globals_.get("Handler"))
        for event in properties.get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event["Properties"]
            routes.append(
                Route(props["Method"].upper(), props["Path"], logical_id, code_uri.resolve(), handler)
            )
    return routes


def layer_paths(template: dict[str, Any] | None = None) -> list[Path]:
    """Content folders of the template's layers (what Lambda puts on the path under /opt/python)."""
    template = template if template is not None else load_template()
    return [
        (PROJECT_ROOT / resource["Properties"]["ContentUri"]).resolve()
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    ]


def function_folders(template: dict[str, Any] | None = None) -> list[Path]:
    """Code folders of the template's functions: Lambda imports each handler as a top-level module."""
    template = template if template is not None else load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    return [
        (PROJECT_ROOT / resource.get("Properties", {}).get("CodeUri", globals_.get("CodeUri", "."))).resolve()
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]


@cache
def _template_function_folders() -> tuple[Path, ...]:
    # Read once per process: Route.load() runs on every request of the local server.
    return tuple(function_folders())


def use_function_folders(template: dict[str, Any] | None = None) -> None:
    """Make every handler module importable by its bare name, as Lambda does with the function's folder.

    The one place that puts code on the path: the `abtest` package itself is installed (pip -e).
    """
    folders = function_folders(template) if template is not None else _template_function_folders()
    for folder in reversed(folders):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def match(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for a request, with its path parameters, or None."""
    candidates = []
    for route in routes:
        if route.method not in (method.upper(), "ANY"):
            continue
        found = route.pattern.match(path)
        if found:
            candidates.append((route, found.groupdict()))
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: candidate[0].specificity)
