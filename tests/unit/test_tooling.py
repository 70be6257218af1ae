"""The developer tooling keeps its promises: unit tests have no sockets, `make help` lists every
target with its purpose, and the pre-commit hooks are the ones the project relies on."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest
import yaml
from pytest_socket import SocketBlockedError

from localdev.postgres import PROJECT_ROOT

MAKEFILE = PROJECT_ROOT / "Makefile"
TARGET = re.compile(r"^([A-Za-z0-9_-]+):(?!=)(.*)$")


# pytest-socket's error warns as well as raising; the raise is what these tests check.
EXPECTED_BLOCK = pytest.mark.filterwarnings("ignore:A (unit )?test tried")


@EXPECTED_BLOCK
def test_a_unit_test_cannot_open_a_socket() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 5432), timeout=1)
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


@EXPECTED_BLOCK
def test_a_unit_test_cannot_reach_the_database_through_psycopg() -> None:
    import psycopg

    with pytest.raises(SocketBlockedError):
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=1)


def _targets() -> dict[str, str]:
    """Every named target of the Makefile with the rest of its rule line."""
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    return {m.group(1): m.group(2) for line in lines if (m := TARGET.match(line))}


def test_every_make_target_has_a_purpose_and_is_phony() -> None:
    targets = _targets()
    assert {"help", "install", "run", "test", "lock", "build"} <= set(targets)
    missing = sorted(name for name, rest in targets.items() if not re.search(r"## \S", rest))
    assert not missing, f"Makefile targets without a `## purpose` comment: {missing}"
    phony = set(re.search(r"^\.PHONY:(.*?)(?<!\\)$", MAKEFILE.read_text(), re.M | re.S).group(1).split())
    phony.discard("\\")
    assert phony == set(targets), f".PHONY differs from the targets: {sorted(phony ^ set(targets))}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target_with_its_purpose() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for name, rest in _targets().items():
        purpose = rest.split("## ", 1)[1].strip()
        assert re.search(rf"^\s*make {re.escape(name)}\s+{re.escape(purpose)}$", out, re.M), name


def test_pre_commit_runs_the_projects_checks_from_the_venv() -> None:
    config = yaml.safe_load((PROJECT_ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert [repo["repo"] for repo in config["repos"]] == ["local"], "hook repositories need GitHub"
    assert {"ruff", "ruff-format", "end-of-file-fixer", "openapi-stale"} <= set(hooks)
    for hook in hooks.values():
        executable = hook["entry"].split()[0]
        assert executable.startswith(".venv/bin/"), f"{hook['id']} must use the venv's pinned tools"
        assert (PROJECT_ROOT / executable).exists(), f"{executable} is not installed: `make install`"
    assert "tests/unit/test_openapi.py" in hooks["openapi-stale"]["entry"]
