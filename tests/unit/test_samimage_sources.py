"""localdev/samimage/build.sh takes its Debian archive from the machine's apt sources, naming no host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from localdev.postgres import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "localdev" / "samimage" / "build.sh"


def archive(etc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--print-archive"],
        env={**os.environ, "APT_ETC": str(etc)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "sources.list.d/debian.sources": "Types: deb\nURIs: http://archive.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "Types: deb-src deb\nURIs: http://archive.example/debian http://second.example/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
            },
            "http://archive.example/debian",
        ),
        (
            {
                "sources.list": "# deb http://commented.example/debian bookworm main\n"
                "deb https://tools.example/apt tools-bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] file:///srv/mirror bookworm main\n"
            },
            "file:///srv/mirror",
        ),
        (
            {
                "sources.list.d/off.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/d\n"
                "Suites: bookworm\n\n",
                "sources.list.d/on.sources": "Types: deb\nURIs: http://on.example/d\nSuites: bookworm\n",
            },
            "http://on.example/d",
        ),
    ],
    ids=["deb822", "one-line-with-options", "disabled-stanza"],
)
def test_the_archive_is_the_first_bookworm_source_of_apt(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = archive(tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_without_a_bookworm_source_it_says_so_instead_of_guessing_a_host(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://other.example/ubuntu jammy main\n")
    result = archive(tmp_path)
    assert result.returncode == 3
    assert "DEBIAN_MIRROR" in result.stderr or "no apt source" in result.stderr
    assert result.stdout == ""


def test_the_script_names_no_archive_host() -> None:
    text = SCRIPT.read_text()
    assert "debian.org" not in text
    assert "http://" not in text
    assert "https://" not in text
