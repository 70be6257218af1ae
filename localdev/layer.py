"""Trim the built layers: `python -m localdev.layer trim .aws-sam/build/AbTestLayer/python ...`.

`make build` runs it after `sam build` (and before precompiling) on both layers (AbTestLayer, the shared
one, and NumpyLayer, numpy for AssignmentsFunction), `make sam-local` too, and bench/bench_layer_size.py
on its own install of the layers, so the sizes measured are the sizes shipped. Two kinds of files go:

- the distributions the Lambda Python runtime already provides: botocore and what only it needs
  (urllib3, python-dateutil, six). The lock (layers/abtest/requirements.txt) must still pin them:
  aws-xray-sdk requires botocore, and `sam build` resolves the requirements with a hash-checking
  `pip download`, which refuses a dependency that is not pinned and hashed there ("In
  --require-hashes mode, all requirements must have their versions pinned"). boto3 and s3transfer
  are never installed (`make lock` leaves them out). At run time the runtime's copies are imported:
  by boto3 for Secrets Manager or an IAM token, and by the X-Ray SDK when tracing is on.
- files never used at run time: test suites (`tests/` folders inside packages), type stubs (`*.pyi`)
  and C headers (`include/` folders: numpy's, for building extensions against it).

A distribution is removed file by file from its RECORD (what pip installed), so nothing another
distribution installed is touched.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

# Provided by the Lambda Python runtime (with boto3): never shipped in the layer.
RUNTIME_PROVIDED = frozenset({"botocore", "urllib3", "python-dateutil", "six"})
# Folder names and suffixes of files no import at run time reads.
UNUSED_FOLDERS = frozenset({"tests", "include"})
UNUSED_SUFFIXES = (".pyi",)


@dataclass
class Trimmed:
    """What a trim removed: distributions by name, and the bytes removed."""

    distributions: list[str]
    bytes_removed: int


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): "python_dateutil" -> "python-dateutil"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def installed_distributions(site: Path) -> dict[str, Path]:
    """The dist-info folders of a `pip install --target` folder, by canonical distribution name."""
    found = {}
    for info in site.glob("*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
        found[canonical_name(name)] = info
    return found


def _remove_distribution(site: Path, info: Path) -> int:
    removed = 0
    folders: set[Path] = set()
    with (info / "RECORD").open(encoding="utf-8", newline="") as record:
        for row in csv.reader(record):
            if not row:
                continue
            path = (site / row[0]).resolve()
            if not path.is_relative_to(site.resolve()) or not path.is_file():
                continue
            removed += path.stat().st_size
            path.unlink()
            folders.add(path.parent)
    # Folders left empty (package folders, __pycache__), deepest first.
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != site.resolve() and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    if info.exists():
        removed += _size(info)
        shutil.rmtree(info)
    return removed


def trim(site: Path) -> Trimmed:
    """Remove the runtime-provided distributions and the files unused at run time from `site`."""
    removed = 0
    dropped = []
    for name, info in sorted(installed_distributions(site).items()):
        if name in RUNTIME_PROVIDED:
            removed += _remove_distribution(site, info)
            dropped.append(name)
    for package in [path for path in site.iterdir() if path.is_dir() and not path.name.endswith("-info")]:
        for folder in sorted(package.rglob("*"), key=lambda p: len(p.parts)):
            if folder.is_dir() and folder.name in UNUSED_FOLDERS:
                removed += _size(folder)
                shutil.rmtree(folder)
        for stub in package.rglob("*"):
            if stub.is_file() and stub.suffix in UNUSED_SUFFIXES:
                removed += stub.stat().st_size
                stub.unlink()
    return Trimmed(dropped, removed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.layer", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["trim"])
    parser.add_argument("sites", type=Path, nargs="+", help="a layer's python/ folder (sam build output)")
    args = parser.parse_args(argv)
    missing = [str(site) for site in args.sites if not site.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    for site in args.sites:
        done = trim(site)
        print(f"trimmed {site}: removed {', '.join(done.distributions) or 'no distribution'}", end="")
        print(f" and unused files, {done.bytes_removed / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
