"""Unzipped size of the Lambda layer (AbTestLayer), against the 50 MB target of issue 14.

    .venv/bin/python bench/bench_layer_size.py [--keep DIR]

Builds the layer the way `make build` does, without the SAM CLI: pip installs
layers/abtest/requirements.txt (the lock, with its hashes) for Lambda's Python 3.12 on arm64 into a
temporary `python/` folder next to a copy of the `abtest` package, then applies the same trim as
`make build` (localdev/layer.py: the runtime-provided botocore closure, test suites, type stubs and C
headers). Sizes are the sum of the files' sizes, as Lambda counts a layer's unzipped size. Bytecode:
`make build` precompiles the layer (Python 3.12); the row with bytecode is printed when a python3.12 is
on the PATH. Needs the package index pip is configured with (no database).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from _harness import PROJECT_ROOT, environment_line, markdown_table

from localdev.layer import installed_distributions, trim

TARGET_MB = 50.0
LAYER = PROJECT_ROOT / "layers" / "abtest"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")


def megabytes(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 1e6


def install(site: Path) -> None:
    """The layer as sam build lays it out: the package folder plus the locked requirements."""
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        *platforms,
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--target",
        str(site),
        "-r",
        str(LAYER / "requirements.txt"),
    ]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(LAYER / "abtest", site / "abtest", ignore=ignore)


def by_distribution(site: Path) -> dict[str, float]:
    """Megabytes per distribution (from its RECORD), the abtest package, and anything else."""
    owner: dict[Path, str] = {}
    for name, info in installed_distributions(site).items():
        for line in (info / "RECORD").read_text(encoding="utf-8").splitlines():
            owner[(site / line.split(",", 1)[0]).resolve()] = name
    sizes: defaultdict[str, float] = defaultdict(float)
    for file in site.rglob("*"):
        if file.is_file():
            resolved = file.resolve()
            name = owner.get(resolved) or ("abtest" if resolved.is_relative_to(site / "abtest") else "other")
            sizes[name] += file.stat().st_size / 1e6
    return dict(sizes)


def compile_with_312(site: Path) -> bool:
    """Precompile like `make build` (python3.12, unchecked-hash); False when no python3.12 is found."""
    python = shutil.which("python3.12")
    if python is None:
        return False
    # pyenv's shim needs the version named, as the Makefile's PY312_VERSION does.
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PY312_VERSION", "3.12.1")}
    done = subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(site)],
        check=False,
        capture_output=True,
        env=env,
    )
    return done.returncode == 0


def verdict(size: float) -> str:
    return "met" if size <= TARGET_MB else f"missed by {size - TARGET_MB:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", type=Path, help="build into this folder and keep it (default: a temp folder)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="abtest-layer-") as tmp:
        root = args.keep or Path(tmp)
        site = root / "python"
        if site.exists():
            shutil.rmtree(site)
        install(site)
        before = megabytes(site)
        before_parts = by_distribution(site)
        trimmed = trim(site)
        after = megabytes(site)
        parts = by_distribution(site)
        numpy = parts.get("numpy", 0.0)
        compiled = compile_with_312(site)
        with_bytecode = megabytes(site) if compiled else None

    print(f"# Layer size (AbTestLayer, unzipped)\n\n{environment_line()}\n")
    rows = [
        ["as the lock installs it (before the trim)", f"{before:.1f}", verdict(before)],
        [
            f"trimmed, as `make build` ships it (without {', '.join(trimmed.distributions)}, tests, stubs,"
            " headers)",
            f"{after:.1f}",
            verdict(after),
        ],
    ]
    if with_bytecode is not None:
        rows.append(["trimmed, with the Python 3.12 bytecode `make build` adds", f"{with_bytecode:.1f}", ""])
    rows.append(
        ["trimmed, without numpy (what a numpy layer of its own would leave)", f"{after - numpy:.1f}", ""]
    )
    print(markdown_table(["layer", "MB", f"target <= {TARGET_MB:g} MB"], rows))
    print("\nLargest parts after the trim (MB; before the trim in brackets):\n")
    top = sorted(parts.items(), key=lambda item: -item[1])[:10]
    print(
        markdown_table(
            ["distribution", "MB", "before trim"],
            [[name, f"{size:.1f}", f"({before_parts.get(name, 0.0):.1f})"] for name, size in top],
        )
    )
    removed = sorted(set(before_parts) - set(parts))
    print(f"\nRemoved by the trim: {', '.join(removed)}; {trimmed.bytes_removed / 1e6:.1f} MB in all.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
