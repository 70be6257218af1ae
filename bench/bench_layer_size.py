"""Unzipped size of the Lambda layers (AbTestLayer, NumpyLayer), against the 50 MB target of issue 14.

    .venv/bin/python bench/bench_layer_size.py [--keep DIR]

Builds the layers the way `make build` does, without the SAM CLI: pip installs each layer's lock
(layers/abtest/requirements.txt, layers/numpy/requirements.txt, with their hashes) for Lambda's Python
3.12 on arm64 into a temporary `<Layer>/python/` folder (the shared one next to a copy of the `abtest`
package), then applies the same trim as `make build` (localdev/layer.py: the runtime-provided botocore
closure, test suites, type stubs and C headers). Sizes are the sum of the files' sizes, as Lambda counts
a layer's unzipped size. The target is the shared layer's, which every function gets; numpy's layer goes
to AssignmentsFunction only (the one function that ranks), so the per-function totals are printed too.
Bytecode: `make build` precompiles the layers (Python 3.12); the rows with bytecode are printed when a
python3.12 is on the PATH. Needs the package index pip is configured with (no database).
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
from dataclasses import dataclass
from pathlib import Path

from _harness import PROJECT_ROOT, environment_line, markdown_table

from localdev.layer import installed_distributions, trim

TARGET_MB = 50.0
# Logical id -> content folder, as template.yaml declares them (tests/unit/test_template.py pins these).
LAYERS = {"AbTestLayer": PROJECT_ROOT / "layers" / "abtest", "NumpyLayer": PROJECT_ROOT / "layers" / "numpy"}
SHARED = "AbTestLayer"
# Which layers each function gets (template.yaml: Globals gives every function AbTestLayer;
# AssignmentsFunction adds NumpyLayer).
FUNCTION_LAYERS = {
    "AssignmentsFunction": ["AbTestLayer", "NumpyLayer"],
    "every other function": ["AbTestLayer"],
}
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")


def megabytes(path: Path) -> float:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file()) / 1e6


def install(site: Path, layer: Path) -> None:
    """A layer as sam build lays it out: the locked requirements plus the folder's packages (abtest)."""
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
        str(layer / "requirements.txt"),
    ]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in layer.iterdir():
        if package.is_dir():
            shutil.copytree(package, site / package.name, ignore=ignore)


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


@dataclass
class Measured:
    """One layer's sizes in MB: as the lock installs it, trimmed, trimmed with bytecode (None: no 3.12)."""

    before: float
    after: float
    with_bytecode: float | None
    before_parts: dict[str, float]
    parts: dict[str, float]
    removed: list[str]
    bytes_removed: int


def measure(site: Path, layer: Path) -> Measured:
    if site.exists():
        shutil.rmtree(site)
    install(site, layer)
    before, before_parts = megabytes(site), by_distribution(site)
    trimmed = trim(site)
    after, parts = megabytes(site), by_distribution(site)
    with_bytecode = megabytes(site) if compile_with_312(site) else None
    return Measured(
        before, after, with_bytecode, before_parts, parts, trimmed.distributions, trimmed.bytes_removed
    )


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
        layers = {name: measure(root / name / "python", folder) for name, folder in LAYERS.items()}

    print(f"# Layer sizes (unzipped)\n\n{environment_line()}\n")
    rows = []
    for name, layer in layers.items():
        target = verdict if name == SHARED else (lambda size: "")
        rows.append([f"{name}, as its lock installs it (before the trim)", f"{layer.before:.1f}", ""])
        removed = ", ".join([*layer.removed, "tests, stubs, headers"])
        rows.append(
            [
                f"{name}, trimmed, as `make build` ships it (without {removed})",
                f"{layer.after:.1f}",
                target(layer.after),
            ]
        )
        if layer.with_bytecode is not None:
            rows.append(
                [
                    f"{name}, trimmed, with the Python 3.12 bytecode `make build` adds",
                    f"{layer.with_bytecode:.1f}",
                    target(layer.with_bytecode),
                ]
            )
    for function, names in FUNCTION_LAYERS.items():
        total = sum(layers[name].after for name in names)
        rows.append([f"{function}: {' + '.join(names)}, trimmed", f"{total:.1f}", ""])
        if all(layers[name].with_bytecode is not None for name in names):
            compiled = sum(layers[name].with_bytecode or 0.0 for name in names)
            rows.append([f"{function}: {' + '.join(names)}, with bytecode", f"{compiled:.1f}", ""])
    print(markdown_table(["layer", "MB", f"target <= {TARGET_MB:g} MB (shared layer)"], rows))
    print("\nLargest parts after the trim (MB; before the trim in brackets):\n")
    parts = [(name, part, size) for name, layer in layers.items() for part, size in layer.parts.items()]
    top = sorted(parts, key=lambda item: -item[2])[:12]
    print(
        markdown_table(
            ["layer", "distribution", "MB", "before trim"],
            [
                [name, part, f"{size:.1f}", f"({layers[name].before_parts.get(part, 0.0):.1f})"]
                for name, part, size in top
            ],
        )
    )
    for name, layer in layers.items():
        removed = sorted(set(layer.before_parts) - set(layer.parts))
        print(
            f"\n{name}: removed by the trim: {', '.join(removed) or 'no distribution'};"
            f" {layer.bytes_removed / 1e6:.1f} MB in all."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
