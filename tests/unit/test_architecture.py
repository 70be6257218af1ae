"""The layer's folders are its architecture; these tests hold the boundaries, read from the imports.

contract/  bit-exact assignment contract        imports: stdlib, mmh3
domain/    experiments, decisions, serving       imports: contract, errors, settings, observability
analysis/  rollup fold, reports                 imports: domain, contract, stats, errors
stats/     the statistics engine                imports: itself, field_path and ErrorCode (stdlib only)
storage/   the only SQL and the only psycopg
http/      resolver, error mapping, scopes      the only Powertools event-handler user (with handlers)

And the homes of a kind of definition: HTTP-only views (pydantic `*Request`, `*Response`, `*Page`) in
http/schemas.py, every `MAX_*` limit in limits.py (the contract keeps its own), and no domain module
past 400 lines. Every error code is a member of `abtest.errors.ErrorCode`, never a string literal.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from abtest.errors import ErrorCode
from localdev.postgres import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "layers" / "abtest" / "abtest"
FUNCTIONS = PROJECT_ROOT / "functions"
PURE = ("contract", "domain", "analysis", "stats")
# The service's one error-field syntax and its one list of error codes (the CLI answers the same codes).
SHARED_WITH_STATS = {
    "abtest.field_path",
    "abtest.field_path.field_path",
    "abtest.errors",
    "abtest.errors.ErrorCode",
}


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
        "abtest.wiring",
        "psycopg",
        "boto3",
        "aws_lambda_powertools.event_handler",
    ):
        assert not _uses(names, forbidden), f"{path.name} imports {forbidden}"


@pytest.mark.parametrize("path", files_in(PACKAGE / "stats"), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_the_statistics_engine_stands_alone(path: Path) -> None:
    # It is shaped like gbstats and runs as `python -m abtest.stats`: nothing else of the service.
    # Its exceptions are abtest.field_path, the service's one error-field syntax, and ErrorCode from
    # abtest.errors, its one list of error codes: both standard library only.
    own = {name for name in imports_of(path) if name.startswith("abtest")} - SHARED_WITH_STATS
    assert all(name.startswith("abtest.stats") for name in own), own


@pytest.mark.parametrize("shared", ["field_path.py", "errors.py"])
def test_what_the_statistics_engine_shares_imports_nothing_of_the_service(shared: str) -> None:
    assert not {name for name in imports_of(PACKAGE / shared) if name.startswith("abtest")}


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


# --- Homes: where a kind of definition may live ------------------------------------------------------

SCHEMAS = PACKAGE / "http" / "schemas.py"
LIMITS = PACKAGE / "limits.py"
HTTP_VIEW_SUFFIXES = ("Request", "Response", "Page")
DOMAIN_MODULE_CEILING = 400  # lines; a domain module past this is two concepts


def _classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [node for node in tree.body if isinstance(node, ast.ClassDef)]


def _base_names(node: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def pydantic_models(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of the classes that are pydantic models: BaseModel's subclasses, to any depth."""
    models = {"BaseModel"}
    while True:
        found = {
            node.name
            for tree in trees.values()
            for node in _classes(tree)
            if _base_names(node) & models and node.name not in models
        }
        if not found:
            return models - {"BaseModel"}
        models |= found


def http_views_in(tree: ast.Module, models: set[str]) -> list[str]:
    """The pydantic models of a module named like HTTP views (`*Request`, `*Response`, `*Page`)."""
    return [
        node.name for node in _classes(tree) if node.name in models and node.name.endswith(HTTP_VIEW_SUFFIXES)
    ]


def limits_in(tree: ast.Module) -> list[str]:
    """Module-level `MAX_*` constants a module defines."""
    names: list[str] = []
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        names.extend(t.id for t in targets if isinstance(t, ast.Name) and t.id.startswith("MAX_"))
    return names


# The statistics engine stands alone (its CLI reads its own request models); the assignment contract is
# reproduced by SDK authors on its own, bounds included (MAX_HOLDOUT_PERCENT).
SERVICE_FILES = [path for path in ALL_FILES if not path.is_relative_to(PACKAGE / "stats")]
TREES = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SERVICE_FILES}
MODELS = pydantic_models(TREES)


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_http_views_live_in_the_schemas_module(path: Path) -> None:
    if path == SCHEMAS:
        return
    assert http_views_in(TREES[path], MODELS) == [], "HTTP-only views belong in abtest/http/schemas.py"


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_limits_live_in_the_limits_module(path: Path) -> None:
    if path == LIMITS or path.is_relative_to(PACKAGE / "contract"):
        return
    assert limits_in(TREES[path]) == [], "every limit is defined once, in abtest/limits.py"


@pytest.mark.parametrize("path", files_in(PACKAGE / "domain"), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_no_domain_module_holds_two_concepts(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= DOMAIN_MODULE_CEILING, f"{path.name} has {lines} lines: split it by concept"


def test_the_home_checks_can_fail() -> None:
    stray = ast.parse(
        "from pydantic import BaseModel\n"
        "MAX_THINGS = 3\n"
        "class Base(BaseModel): ...\n"
        "class ThingPage(Base): ...\n"
        "class BadRequest(Exception): ...\n"
    )
    assert http_views_in(stray, pydantic_models({Path("stray.py"): stray})) == ["ThingPage"]
    assert limits_in(stray) == ["MAX_THINGS"]
    assert "ExperimentPage" in http_views_in(TREES[SCHEMAS], MODELS)
    assert "MAX_USER_ID_LENGTH" in limits_in(TREES[LIMITS])


def test_tests_reset_state_through_the_wiring_not_the_handlers() -> None:
    # One reset (abtest.wiring.reset) forgets every cache; a test reaching into a handler module's
    # globals through sys.modules would tie the tests to where a handler keeps its state.
    reach = re.compile(r"sys\.modules(\.get\(|\[)\s*[\"'][a-z_]+_handler[\"']")
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in sorted((PROJECT_ROOT / "tests").rglob("*.py"))
        if path != Path(__file__) and reach.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert reach.search('handler = sys.modules.get("assignments_handler")')


# --- one home per error code ------------------------------------------------------------------------------

ERROR_CODES = {code.value for code in ErrorCode}
# Calls whose positional arguments include an error body's code (the code's position differs per call).
ERROR_CALLS = {
    "error_response",
    "_proxy_error",
    "_refuse",
    "BodyError",
    "DomainError",
    "NotFound",
    "Conflict",
    "InvalidInput",
    "BadRequest",
    "Unavailable",
    "StatsInputError",
}
# Where the strings equal to a code are not ours to name: none so far. An `ofrep` module would belong
# here, since OFREP's error codes (FLAG_NOT_FOUND, ...) are that protocol's, not the service's.
NOT_OUR_CODES: set[Path] = set()
CODE_FILES = [
    path
    for path in sorted(
        [*PACKAGE.rglob("*.py"), *FUNCTIONS.rglob("*.py"), *(PROJECT_ROOT / "localdev").rglob("*.py")]
    )
    if path != PACKAGE / "errors.py" and path not in NOT_OUR_CODES
]


def code_literals_in(tree: ast.AST) -> list[tuple[int, str]]:
    """Line and text of each string literal equal to an error code where a code goes: a `code=` or
    `error=` argument, an `"error"` key's value, an argument of an error constructor, a value assigned
    to `code` or `error`, or an element of a tuple (`error, message = "...", "..."`, constraint tables).
    Other strings that happen to equal a code (an assignment reason, a bandit outcome, a SQL column)
    are not codes and pass."""
    spots: list[ast.expr] = []
    # A type's subscript is no tuple of values: Literal["updated", "invalid_statistics"] names outcomes.
    subscripts = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("code", "error"):
            spots.append(node.value)
        elif isinstance(node, ast.Dict):
            spots.extend(
                value
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and key.value == "error"
            )
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in ERROR_CALLS:
                spots.extend(node.args)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in ast.walk(ast.Tuple(elts=targets)) if isinstance(t, ast.Name)}
            if names & {"code", "error"} and node.value is not None:
                spots.append(node.value)
        elif isinstance(node, ast.Tuple) and id(node) not in subscripts:
            spots.extend(node.elts)
        elif isinstance(node, ast.FunctionDef):
            spots.extend(d for d in node.args.kw_defaults if d is not None)
    found = []
    for spot in spots:
        for leaf in ast.walk(spot):  # a conditional expression or a tuple holds its codes deeper down
            if isinstance(leaf, ast.Constant) and leaf.value in ERROR_CODES:
                found.append((leaf.lineno, str(leaf.value)))
    return sorted(set(found))


@pytest.mark.parametrize("path", CODE_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_error_codes_are_named_from_the_enum(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert code_literals_in(tree) == [], "name the code as an abtest.errors.ErrorCode member"


def test_the_error_code_check_can_fail() -> None:
    planted = ast.parse(
        'raise NotFound("gone", code="experiment_not_found")\n'
        'body = {"error": "invalid_path", "message": "no"}\n'
        'error_response(409, "duplicate_key", "taken")\n'
        'error, message = ("event_id_reused", "again") if reused else (ErrorCode.CONFLICT, "x")\n'
        "def refuse(*, code: str = 'too_many_overrides') -> None: ...\n"
        'reason = "database_unavailable"  # an assignment reason, not a code: passes\n'
        'Outcome = Literal["updated", "invalid_statistics"]  # outcomes, not codes: passes\n'
    )
    assert [text for _, text in code_literals_in(planted)] == [
        "experiment_not_found",
        "invalid_path",
        "duplicate_key",
        "event_id_reused",
        "too_many_overrides",
    ]
    assert len(CODE_FILES) > 100


# --- one home per paging parameter ------------------------------------------------------------------------

PAGING_TYPES = {"limit": {"PageLimit", "SurfacesPageLimit"}, "cursor": {"Cursor"}}


def paging_parameters_in(tree: ast.AST) -> list[tuple[str, str]]:
    """Each (parameter, annotation) of a function's `limit` or `cursor` parameter not typed with the
    shared paging types of abtest/http/paging.py."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                if arg.arg in PAGING_TYPES and arg.annotation is not None:
                    text = ast.unparse(arg.annotation)
                    if text not in PAGING_TYPES[arg.arg]:
                        found.append((arg.arg, text))
    return found


@pytest.mark.parametrize("path", files_in(FUNCTIONS), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_paged_routes_share_the_paging_parameters(path: Path) -> None:
    assert paging_parameters_in(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_paging_check_can_fail() -> None:
    planted = ast.parse("def listing(limit: Annotated[int, Query(le=7)] = 5, cursor: Cursor = None): ...")
    assert paging_parameters_in(planted) == [("limit", "Annotated[int, Query(le=7)]")]


# --- log calls ------------------------------------------------------------------------------------------

_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def _reserved_log_keys() -> set[str]:
    """The attributes of a LogRecord: an `extra` key among them makes logging raise KeyError at the call
    (only when the level is enabled, so a test at WARNING never sees an INFO call fail)."""
    import logging

    return set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def test_no_log_call_overwrites_a_log_record_attribute() -> None:
    reserved = _reserved_log_keys()
    offenders = []
    for folder in ("layers/abtest/abtest", "functions", "localdev"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _LOG_METHODS
                ):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        keys = {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
                        offenders += [
                            f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {k}" for k in keys & reserved
                        ]
    assert offenders == []
