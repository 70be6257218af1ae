"""Every lock is a complete closure, so `make install` can install it with --no-deps and never resolve.

pip installs each lock with `--no-deps` (Makefile `SYNC`): nothing outside the lock is ever looked up,
so a release that appears after `make lock` cannot change what a fresh machine installs. That is only
sound if every requirement of every locked package, extras included, is itself locked at a version that
satisfies it; otherwise the install would silently lack a package. This test walks that closure from
pyproject.toml's roots through each installed package's own metadata (Requires-Dist, markers evaluated
for this interpreter with the extras actually asked for) and fails on the first requirement the lock
lacks or pins outside its range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.test_template import REQUIREMENTS, Pin, _in_file, _pyproject, read_lock

PROJECT = canonicalize_name(_pyproject()["name"])


def _installed_requires(name: str) -> list[Requirement]:
    return [Requirement(line) for line in metadata.requires(name) or []]


def missing_from_closure(
    roots: Iterable[Requirement],
    lock: dict[str, Pin],
    requires: Callable[[str], list[Requirement]] = _installed_requires,
) -> list[str]:
    """What the closure of `roots` needs that `lock` does not pin (or pins outside the range).

    A requirement counts when its marker holds here for one of the extras its parent was asked for;
    each package is visited once per set of extras, so `coverage[toml]` also checks what `toml` adds.
    """
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    stack: list[tuple[Requirement, str]] = [(root, "pyproject.toml") for root in roots]
    while stack:
        requirement, parent = stack.pop()
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        if name == PROJECT:
            optional = _pyproject()["optional-dependencies"]
            stack.extend(
                (Requirement(line), f"{PROJECT}[{extra}]") for extra in extras for line in optional[extra]
            )
            continue
        if name not in lock:
            problems.append(f"{requirement} (required by {parent}) is not locked")
            continue
        version = lock[name].version
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name}=={version} is outside {requirement} (required by {parent})")
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for needed in requires(name):
            environments = [{"extra": extra} for extra in sorted(extras)] or [{"extra": ""}]
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                stack.append(
                    (needed, f"{name}=={version}" + (f"[{','.join(sorted(extras))}]" if extras else ""))
                )
    return problems


def _roots(*extras: str) -> list[Requirement]:
    build = [Requirement(line) for line in _in_file(REQUIREMENTS / "build.in")]
    return [Requirement(f"{PROJECT}[{','.join(extras)}]"), *build] if extras else build


def test_the_run_lock_is_a_complete_closure() -> None:
    runtime = [Requirement(line) for line in _pyproject()["dependencies"]]
    assert missing_from_closure([*runtime, *_roots("local")], read_lock(REQUIREMENTS / "run.txt")) == []


def test_the_dev_lock_is_a_complete_closure() -> None:
    runtime = [Requirement(line) for line in _pyproject()["dependencies"]]
    assert missing_from_closure([*runtime, *_roots("dev")], read_lock(REQUIREMENTS / "dev.txt")) == []


def test_the_installer_lock_pins_one_pip_with_hashes() -> None:
    lock = read_lock(REQUIREMENTS / "installer.txt")
    assert set(lock) == {"pip"}
    assert lock["pip"].hashes


def _fake_lock(**versions: str) -> dict[str, Pin]:
    return {
        name: Pin(Requirement(f"{name}=={version}"), frozenset({"hash=sha256:0"}))
        for name, version in versions.items()
    }


def test_the_closure_check_finds_a_dependency_only_an_extra_asks_for() -> None:
    """The failure seen on 2026-12-07: pytest-cov asks for coverage[toml]; an extra's own needs count."""
    graph = {
        "pytest-cov": [Requirement("coverage[toml]>=7.10.6")],
        "coverage": [Requirement('tomli; extra == "toml"')],
        "tomli": [],
    }
    roots = [Requirement("pytest-cov")]
    assert missing_from_closure(
        roots, _fake_lock(**{"pytest-cov": "7.1.0", "coverage": "7.17.5"}), graph.__getitem__
    ) == ['tomli; extra == "toml" (required by coverage==7.17.5[toml]) is not locked']
    complete = _fake_lock(**{"pytest-cov": "7.1.0", "coverage": "7.17.5", "tomli": "2.0.0"})
    assert missing_from_closure(roots, complete, graph.__getitem__) == []


@pytest.mark.parametrize(("pinned", "expected"), [("7.9.0", ["outside"]), ("7.17.5", [])])
def test_the_closure_check_refuses_a_pin_outside_a_range(pinned: str, expected: list[str]) -> None:
    graph = {"pytest-cov": [Requirement("coverage>=7.10.6")], "coverage": []}
    problems = missing_from_closure(
        [Requirement("pytest-cov")],
        _fake_lock(**{"pytest-cov": "7.1.0", "coverage": pinned}),
        graph.__getitem__,
    )
    assert [word for word in expected if any(word in problem for problem in problems)] == expected
    assert len(problems) == len(expected)
