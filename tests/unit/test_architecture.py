"""The layer's folders are its architecture; these tests hold the boundaries, read from the imports.

contract/  bit-exact assignment contract        imports: stdlib, mmh3
domain/    experiments, decisions, serving       imports: contract, errors, settings, observability
analysis/  rollup fold, reports                 imports: domain, contract, stats, errors
stats/     the statistics engine                imports: itself, and field_path (stdlib only)
storage/   the only SQL and the only psycopg
http/      resolver, error mapping, scopes      the only Powertools event-handler user (with handlers)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from localdev.postgres import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "layers" / "abtest" / "abtest"
FUNCTIONS = PROJECT_ROOT / "functions"
PURE = ("contract", "domain", "analysis", "stats")
SHARED_WITH_STATS = {"abtest.field_path", "abtest.field_path.field_path"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names; the package uses no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def files_in(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def role_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _uses(names: set[str], prefix: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for name in names)


ALL_FILES = files_in(PACKAGE) + files_in(FUNCTIONS)


def test_the_layout_is_what_the_tests_expect() -> None:
    roles = {role_of(path) for path in files_in(PACKAGE)}
    assert {"contract", "domain", "analysis", "stats", "storage", "http"} <= roles


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_only_storage_imports_the_database_driver(path: Path) -> None:
    if path.is_relative_to(PACKAGE) and role_of(path) == "storage":
        return
    assert not _uses(imports_of(path), "psycopg"), f"{path.name} talks to the database outside storage/"


@pytest.mark.parametrize("path", files_in(PACKAGE), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_only_http_and_the_handlers_import_the_event_handler(path: Path) -> None:
    if role_of(path) == "http":
        return
    assert not _uses(imports_of(path), "aws_lambda_powertools.event_handler"), path.name


@pytest.mark.parametrize(
    "path",
    [path for path in files_in(PACKAGE) if role_of(path) in PURE],
    ids=lambda p: str(p.relative_to(PROJECT_ROOT)),
)
def test_pure_code_depends_on_neither_storage_nor_http(path: Path) -> None:
    names = imports_of(path)
    for forbidden in (
        "abtest.storage",
        "abtest.http",
        "psycopg",
        "boto3",
        "aws_lambda_powertools.event_handler",
    ):
        assert not _uses(names, forbidden), f"{path.name} imports {forbidden}"


@pytest.mark.parametrize("path", files_in(PACKAGE / "stats"), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_the_statistics_engine_stands_alone(path: Path) -> None:
    # It is shaped like gbstats and runs as `python -m abtest.stats`: nothing else of the service.
    # Its one exception is abtest.field_path, the service's one error-field syntax: standard library only.
    own = {name for name in imports_of(path) if name.startswith("abtest")} - SHARED_WITH_STATS
    assert all(name.startswith("abtest.stats") for name in own), own


def test_what_the_statistics_engine_shares_imports_nothing_of_the_service() -> None:
    assert not {name for name in imports_of(PACKAGE / "field_path.py") if name.startswith("abtest")}


@pytest.mark.parametrize(
    "path", files_in(PACKAGE / "contract"), ids=lambda p: str(p.relative_to(PROJECT_ROOT))
)
def test_the_assignment_contract_needs_only_the_hash(path: Path) -> None:
    # SDK authors reproduce this folder: it must not lean on the rest of the service.
    own = {name for name in imports_of(path) if name.startswith("abtest")}
    assert all(name.startswith("abtest.contract") for name in own), own


def test_the_boundary_checks_can_fail() -> None:
    # A check that cannot fail is worse than none: the reader finds a violation in a file made for it.
    assert _uses(imports_of(PACKAGE / "storage" / "database.py"), "psycopg")
    assert _uses(imports_of(PACKAGE / "http" / "app.py"), "aws_lambda_powertools.event_handler")
