"""Cold-start import cost of every HTTP handler module, next to `import boto3`, in fresh processes.

    .venv/bin/python bench/bench_cold_start.py [--runs 7] [--quick-runs 3]

Every row starts a new interpreter (this venv's python) that times one import with
time.perf_counter; the parent also times the whole process (interpreter start, import, exit). Medians
over --runs processes (--quick-runs for the slow no-bytecode rows and the per-dependency rows),
run in rounds (every row once per round) so background load falls on all rows alike.

The project code is copied to a temporary folder laid out like Lambda's (/opt/python for the layer,
/var/task for the function), so nothing is written into the repository. Bytecode scenarios:

- cached .pyc: one unmeasured priming run writes the bytecode, then every run reads it (a warm disk
  cache; PYTHONDONTWRITEBYTECODE is removed from the children's environment);
- project code without .pyc: the copy has no __pycache__ and the children run with -B, so the layer
  and function are compiled on every start while the dependencies keep their .pyc. This is what
  Lambda does when the deployment package ships no bytecode: /var/task and /opt are read-only there,
  so nothing is ever cached;
- nothing cached: PYTHONPYCACHEPREFIX points at an empty folder and -B stops writes, so every
  non-frozen module, the dependencies and the stdlib included, is compiled from source.

Target (issue 14): each HTTP handler's import with cached .pyc at most 1.0x `import boto3` in the
same run; the `target` column checks it. Imports deferred to a request are shown too, so a deferral is
never mistaken for a saving: the recommender (numpy) loads with the first /recommendations.

Tracing: rows run with POWERTOOLS_TRACE_DISABLED=true like the other benchmarks; one row emulates the
deployed function (LAMBDA_TASK_ROOT set, tracing on, as template.yaml's `Tracing: Active` implies), where
the X-Ray SDK is loaded at import (abtest.observability.LazyTracer). Finally a `-X importtime` run of
the assignments handler shows which imports dominate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import environment_line, markdown_table

PYTHON = sys.executable
BOTO3_CACHED = "boto3, cached .pyc"
BOTO3_NO_CACHE = "boto3, nothing cached"
# The environment of every child: the benchmarks' Powertools settings, and no bytecode switches
# inherited from the caller's shell (this sandbox exports PYTHONDONTWRITEBYTECODE=1).
CHILD_ENV_DROP = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPATH", "LAMBDA_TASK_ROOT")
CHILD_ENV_SET = {
    "POWERTOOLS_SERVICE_NAME": "abtest-bench",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestBench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
# Each child puts the copied layer and function folder on its path, as Lambda's runtime does, then
# prints the milliseconds its statement took, measured around that statement only. The folders go in
# through this bootstrap rather than PYTHONPATH: the project sets no PYTHONPATH anywhere (the package
# is installed; localdev.template.use_function_folders is the one place that adds function folders),
# and a PYTHONPATH inherited from the caller's shell is dropped, so nothing else can slip in. Placed
# right after the script's own entry, exactly where PYTHONPATH entries would go, ahead of the
# installed (editable) package, so the copy is what gets imported.
CHILD_CODE = (
    "import sys\nsys.path[1:1] = {paths!r}\n"
    "import time\n_t = time.perf_counter()\n{statement}\nprint((time.perf_counter() - _t) * 1000)\n"
)


@dataclass(frozen=True)
class Layout:
    """The copied code: the layer's folder and one folder per function, as Lambda lays them out."""

    layer: Path
    functions: dict[str, Path]

    def path_for(self, function: str | None) -> list[Path]:
        return [self.layer] + ([self.functions[function]] if function else [])


@dataclass(frozen=True)
class Scenario:
    label: str
    statement: str
    function: str | None = None  # whose folder goes on the path
    flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    drop_env: tuple[str, ...] = ()
    prime: bool = True  # one unmeasured run first, to write the bytecode
    pristine: bool = False  # run a copy that never gets bytecode (with -B), not the cached one
    quick: bool = False  # use --quick-runs
    baseline: str | None = BOTO3_CACHED  # the boto3 row to compare with (same bytecode state)


@dataclass(frozen=True)
class Timing:
    import_ms: float
    process_ms: float
    runs: int


def copy_code(root: Path) -> Layout:
    """Copy the layer and every function folder of template.yaml, without any bytecode."""
    import abtest
    from localdev.template import function_folders

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    layer = root / "opt" / "python"
    shutil.copytree(Path(abtest.__file__).parent, layer / "abtest", ignore=ignore)
    functions = {}
    for folder in function_folders():
        functions[folder.name] = root / "task" / folder.name
        shutil.copytree(folder, functions[folder.name], ignore=ignore)
    return Layout(layer, functions)


def child_env(layout: Layout, scenario: Scenario) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CHILD_ENV_DROP}
    env.update(CHILD_ENV_SET)
    env.update(scenario.env)
    for key in scenario.drop_env:
        env.pop(key, None)
    return env


def run_once(layout: Layout, scenario: Scenario, extra_flags: Sequence[str] = ()) -> tuple[float, float, str]:
    """(import ms measured by the child, whole process ms measured here, stderr)."""
    paths = [str(folder) for folder in layout.path_for(scenario.function)]
    code = CHILD_CODE.format(paths=paths, statement=scenario.statement)
    command = [PYTHON, *scenario.flags, *extra_flags, "-c", code]
    start = time.perf_counter()
    env = child_env(layout, scenario)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    process_ms = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.label}: child failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1]), process_ms, done.stderr


def measure_all(
    layouts: dict[bool, Layout], rows: Sequence[Scenario], runs: int, quick_runs: int
) -> list[Timing]:
    """Median import and process time per scenario over fresh processes, in rounds: each round runs
    every scenario once, so background load on a shared machine falls on all rows alike (a quick row
    takes part in the first `quick_runs` rounds only)."""
    for scenario in rows:
        if scenario.prime:
            run_once(layouts[scenario.pristine], scenario)
    results: list[list[tuple[float, float]]] = [[] for _ in rows]
    for round_number in range(max(runs, quick_runs)):
        for scenario, found in zip(rows, results, strict=True):
            if round_number < (quick_runs if scenario.quick else runs):
                found.append(run_once(layouts[scenario.pristine], scenario)[:2])
    return [
        Timing(statistics.median(r[0] for r in found), statistics.median(r[1] for r in found), len(found))
        for found in results
    ]


HANDLERS = ("assignments", "events", "experiments", "metrics")  # every HTTP function of template.yaml
TARGET = 1.0  # issue 14: each HTTP handler's cached import <= 1.0x `import boto3` (same run)


def cached_label(function: str) -> str:
    return f"{function}_handler, cached .pyc"


def scenarios(empty_cache: Path) -> list[Scenario]:
    no_cache = {"PYTHONPYCACHEPREFIX": str(empty_cache)}
    # The deployed function: inside Lambda (LAMBDA_TASK_ROOT set), tracing not disabled.
    deployed = {"LAMBDA_TASK_ROOT": str(empty_cache), "AWS_LAMBDA_FUNCTION_NAME": "bench"}
    rows = [
        Scenario("interpreter start only (`pass`)", "pass", baseline=None),
        Scenario(BOTO3_CACHED, "import boto3"),
    ]
    rows += [Scenario(cached_label(f), f"import {f}_handler", f) for f in HANDLERS]
    rows += [
        # What the import defers: the first /recommendations loads the recommender (numpy).
        Scenario(
            "assignments_handler + the recommender (numpy), as after the first /recommendations",
            "import assignments_handler, abtest.domain.recommender",
            "assignments",
        ),
        Scenario(
            "assignments_handler, cached .pyc, tracing on (as deployed)",
            "import assignments_handler",
            "assignments",
            env=deployed,
            drop_env=("POWERTOOLS_TRACE_DISABLED",),
        ),
    ]
    rows += [
        Scenario(
            f"{f}_handler, project code without .pyc (-B)",
            f"import {f}_handler",
            f,
            flags=("-B",),
            prime=False,
            pristine=True,
        )
        for f in HANDLERS
    ]
    rows += [
        Scenario(
            "assignments_handler, nothing cached",
            "import assignments_handler",
            "assignments",
            flags=("-B",),
            env=no_cache,
            prime=False,
            pristine=True,
            quick=True,
            baseline=BOTO3_NO_CACHE,
        ),
        Scenario(
            BOTO3_NO_CACHE,
            "import boto3",
            flags=("-B",),
            env=no_cache,
            prime=False,
            quick=True,
            baseline=BOTO3_NO_CACHE,
        ),
    ]
    return rows


def dependency_scenarios() -> list[Scenario]:
    """What the handler's main dependencies cost on their own (cached .pyc; they overlap)."""
    return [
        Scenario(
            "Powertools Tracer() (tracing disabled)",
            "from aws_lambda_powertools import Tracer; Tracer()",
            quick=True,
        ),
        Scenario(
            "Powertools APIGatewayHttpResolver",
            "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver",
            quick=True,
        ),
        Scenario(
            "Powertools Logger() + Metrics()",
            "from aws_lambda_powertools import Logger, Metrics; Logger(); Metrics()",
            quick=True,
        ),
        Scenario("numpy", "import numpy", quick=True),
        Scenario("psycopg", "import psycopg", quick=True),
        Scenario("pydantic (BaseModel)", "from pydantic import BaseModel", quick=True),
    ]


@dataclass
class ImportNode:
    name: str
    depth: int
    self_us: int
    cumulative_us: int


def import_tree(layout: Layout) -> list[ImportNode]:
    """The `-X importtime` report of one cached import of the assignments handler."""
    scenario = Scenario("importtime", "import assignments_handler", "assignments")
    _, _, stderr = run_once(layout, scenario, ("-X", "importtime"))
    nodes = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, raw_name = line.removeprefix("import time:").split("|")
        depth = (len(raw_name) - len(raw_name.lstrip(" ")) - 1) // 2
        nodes.append(ImportNode(raw_name.strip(), depth, int(self_us), int(cumulative_us)))
    return nodes


def print_import_breakdown(nodes: list[ImportNode]) -> None:
    by_package: defaultdict[str, int] = defaultdict(int)
    for node in nodes:
        by_package[node.name.split(".")[0]] += node.self_us
    total = sum(by_package.values())
    top = sorted(by_package.items(), key=lambda item: -item[1])[:12]
    rows = [[package, f"{us / 1000:.1f}", f"{us / total:.0%}"] for package, us in top]
    print(f"\nSelf time by top-level package (sum {total / 1000:.0f} ms; `-X importtime` adds overhead):\n")
    print(markdown_table(["package", "self ms", "share"], rows))
    # The chain that explains the biggest items: every import of depth <= 4 costing >= 20 ms.
    chain = [node for node in nodes if node.depth <= 4 and node.cumulative_us >= 20_000]
    print("\nImports costing >= 20 ms cumulative (indented by depth; children listed before parents):\n")
    print("```")
    for node in chain:
        print(f"{node.cumulative_us / 1000:7.1f} ms  {'  ' * node.depth}{node.name}")
    print("```")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="processes per row (default 7)")
    parser.add_argument("--quick-runs", type=int, default=3, help="processes per slow or per-dependency row")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="abtest-cold-") as tmp:
        root = Path(tmp)
        # Two copies: one whose bytecode the cached rows write and read, one that never gets any.
        layouts = {False: copy_code(root / "cached"), True: copy_code(root / "pristine")}
        empty_cache = root / "empty-pycache"
        empty_cache.mkdir()
        started = time.perf_counter()
        plan = scenarios(empty_cache) + dependency_scenarios()
        timings = measure_all(layouts, plan, args.runs, args.quick_runs)
        by_label = {scenario.label: timing for scenario, timing in zip(plan, timings, strict=True)}
        rows = []
        targets = {cached_label(function) for function in HANDLERS}
        for scenario, timing in zip(plan, timings, strict=True):
            base = by_label[scenario.baseline].import_ms if scenario.baseline else None
            ratio = f"{timing.import_ms / base:.2f}x" if base else ""
            check = ""
            if base and scenario.label in targets:
                value = timing.import_ms / base
                check = f"<= {TARGET:g}x: " + (
                    "met" if value <= TARGET else f"missed by {value / TARGET:.2f}x"
                )
            rows.append(
                [
                    scenario.label,
                    f"{timing.import_ms:.0f}",
                    ratio,
                    check,
                    f"{timing.process_ms:.0f}",
                    timing.runs,
                ]
            )
        # The no-bytecode rows are only honest if nothing wrote bytecode into their copy.
        assert not any((root / "pristine").rglob("__pycache__")), "bytecode leaked into the pristine copy"
        nodes = import_tree(layouts[False])
        elapsed = time.perf_counter() - started

    print(f"# Cold start: module import in a fresh process\n\n{environment_line()}\n")
    print(f"Medians; measured in {elapsed:.0f} s. `import ms`: the import statement alone, timed inside the")
    print("child. `process ms`: the whole child process, timed by the parent.\n")
    print(
        markdown_table(
            ["what", "import ms", "x boto3 import (same bytecode state)", "target", "process ms", "runs"],
            rows,
        )
    )
    print_import_breakdown(nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
