"""The docs hold together: every page is reachable from the README, every link and every `docs/` path
named in the code leads somewhere, nothing points outside the repository, the route table matches
`openapi.json`, and every curl walk in the docs is one the tests run (localdev/walks.py)."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import mmh3
import pytest

from abtest.contract.bucketing import bucket_for, unit_interval
from abtest.errors import ErrorCode
from localdev.postgres import PROJECT_ROOT
from localdev.walks import LOCAL_BASE_URL, WALK_PAGES, pages_with_walks, walk_blocks, walk_script

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARKDOWN = [
    README,
    PROJECT_ROOT / "bench" / "README.md",
    PROJECT_ROOT / "tests" / "golden" / "README.md",
    *PAGES,
]
README_MAX_LINES = 150

# What the repository's own files are: not the virtualenv, caches, build output or local databases.
_SKIPPED_DIRS = {".git", ".venv", ".tools", ".aws-sam", ".samlocal", ".pgdata", "test-artifacts", "build"}
_CODE_SUFFIXES = {".py", ".sql", ".sh", ".yaml", ".yml", ".toml", ".json", ".cfg", ".txt"}
THIS_FILE = Path(__file__).resolve()


@functools.cache
def repository_files() -> tuple[Path, ...]:
    """The project's code and configuration files (not Markdown), outside generated and cached folders."""
    files = []
    for folder, subfolders, names in os.walk(PROJECT_ROOT):
        subfolders[:] = [
            name
            for name in subfolders
            if name not in _SKIPPED_DIRS
            and not name.endswith(".egg-info")
            and (not name.startswith(".") or name in {".ci", ".github"})
        ]
        for name in names:
            path = Path(folder) / name
            if path.suffix in _CODE_SUFFIXES or name in {"Makefile", "run"}:
                files.append(path)
    return tuple(sorted(files))


def without_code(markdown: str) -> str:
    """The text outside fenced blocks and code spans, where Markdown links live."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", markdown)


def links(page: Path) -> list[str]:
    return re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return {slug(heading) for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_there_are_docs_pages() -> None:
    assert len(PAGES) >= 10, PAGES


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in links(README)}
    unlinked = [page.relative_to(PROJECT_ROOT).as_posix() for page in PAGES if page.resolve() not in linked]
    assert unlinked == [], "add these pages to the README's map of docs/"


def test_the_readme_stays_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, "README.md is the map: put the details in a docs/ page"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda page: page.relative_to(PROJECT_ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # http://, https://, mailto:: not checked offline
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page.resolve()
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert broken == []


def test_every_docs_path_named_in_the_code_exists() -> None:
    missing = []
    for path in [*repository_files(), *MARKDOWN]:
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in re.findall(r"(?<![\w./-])docs/[\w./-]*\w", text):
            if not (PROJECT_ROOT / name).exists():
                missing.append(f"{path.relative_to(PROJECT_ROOT)}: {name}")
    assert missing == []


def test_nothing_points_outside_the_repository() -> None:
    # The docs and the code are read without the workspace they were written in: design notes live in
    # docs/architecture.md. Only the conformance cases are read from beside the checkout, by test code.
    outside = re.compile(r"DESIGN\.md|\banchors\b(?: section|\.md)?|\.\./shared")
    allowed = {PROJECT_ROOT / "tests" / "conformance.py"}
    found = []
    for path in [*repository_files(), *MARKDOWN]:
        if path.resolve() == THIS_FILE or path in allowed:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix != ".md":  # in code only the phrases that name the outside documents
            hits = re.findall(r"DESIGN\.md|\banchors (?:section|\.md)|anchors\.md|\.\./shared", text)
        else:
            hits = outside.findall(text)
        found.extend(f"{path.relative_to(PROJECT_ROOT)}: {hit}" for hit in hits)
    assert found == []


def test_the_code_names_docs_pages_not_readme_sections() -> None:
    # README.md is a map; a rule's documentation is a docs/ page, which the test above keeps existing.
    named = []
    for path in repository_files():
        if path.resolve() == THIS_FILE:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        named.extend(
            f"{path.relative_to(PROJECT_ROOT)}: {match.group(0)}"
            for match in re.finditer(r"(?<!bench/)README\b", text)
        )
    assert named == []


def any_parameter(path: str) -> str:
    """The path with its parameters unnamed: the docs say {id} where the handlers say {experiment_id}."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_the_route_table_lists_every_route_with_its_scope() -> None:
    spec = json.loads((PROJECT_ROOT / "openapi.json").read_text(encoding="utf-8"))
    expected = {
        (method.upper(), any_parameter(path.removeprefix("/api/v1")), operation["x-required-scope"])
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }
    overview = (DOCS / "api" / "overview.md").read_text(encoding="utf-8")
    row = r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| `(\w+)` \|"
    rows = re.findall(row, overview, flags=re.MULTILINE)
    documented = [(method, any_parameter(path), scope) for method, path, scope in rows]
    assert len(documented) == len(set(documented))
    assert set(documented) == expected


def test_every_page_with_a_curl_walk_is_run_by_the_tests() -> None:
    assert pages_with_walks() == sorted(WALK_PAGES)


def test_the_walk_script_runs_every_block_against_the_given_server() -> None:
    script = walk_script("http://127.0.0.1:4321")

    assert LOCAL_BASE_URL not in script
    for page in WALK_PAGES:
        for block in walk_blocks(PROJECT_ROOT / page):
            first_request = next(line for line in block.split("\n") if "curl " in line)
            assert first_request.replace(LOCAL_BASE_URL, "http://127.0.0.1:4321") in script
    # The quick start's $ID is set before a later page uses it.
    assert script.index("ID=$(curl") < script.index("/overrides/qa-alice")


def test_a_request_documented_as_failing_must_answer_a_4xx() -> None:
    script = walk_script()
    documented_errors = sum(
        block.count('\n# {"error"') for page in WALK_PAGES for block in walk_blocks(PROJECT_ROOT / page)
    )

    assert documented_errors >= 2
    assert script.count("\ncurl_4xx ") == documented_errors


def test_the_contract_pages_worked_example_is_what_the_contract_computes() -> None:
    page = (DOCS / "assignment-contract.md").read_text(encoding="utf-8")
    salt, user_id, weights = "exp-checkout", "ユーザー", [0.3, 0.4, 0.3]
    key = f"{salt}:{user_id}".encode()

    assert f"bytes `{key.hex()}`" in page
    assert f"h = {mmh3.hash(key, 0, signed=False)};" in page
    assert f"u = {unit_interval(salt, user_id)!r};" in page
    assert bucket_for(user_id, salt, weights, 1.0) == bucket_for(user_id, salt, weights, 0.1) == 1
    assert "so variant 1" in page
    assert "still in variant 1" in page


def test_every_repository_path_the_docs_name_exists() -> None:
    # Files and folders named in code spans, such as `abtest/storage/assignments.py` or
    # `tests/golden/`; `abtest/...` is the layer's package. Generated paths (`.aws-sam/...`,
    # `test-artifacts/...`) and media types are not files of the repository; bench/README.md also names
    # files of the SAM CLI, so it is left out.
    package_root = PROJECT_ROOT / "layers" / "abtest"
    missing = []
    for page in [page for page in MARKDOWN if page.parent.name != "bench"]:
        for token in re.findall(r"`([\w][\w./-]*/[\w./-]*)`", page.read_text(encoding="utf-8")):
            if token.startswith("test-artifacts/") or not (
                token.endswith("/") or "." in token.split("/")[-1]
            ):
                continue
            candidates = [PROJECT_ROOT / token, package_root / token, package_root / "abtest" / token]
            if not any(candidate.exists() for candidate in candidates):
                missing.append(f"{page.relative_to(PROJECT_ROOT)}: {token}")
    assert missing == []


def test_the_error_codes_page_lists_exactly_the_enum() -> None:
    # One row per code (`| \`code\` | status | meaning |`): a code added to ErrorCode needs its row.
    page = (DOCS / "errors.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([a-z_]+)` \| (?:\d{3}|exit \d|batch) \| ", page, flags=re.MULTILINE)
    assert sorted(listed) == sorted(code.value for code in ErrorCode)
