"""First request of a cold environment, with and without SnapStart's priming, next to `import boto3`.

    .venv/bin/python bench/bench_snapstart.py [--runs 5]

Every sample is a fresh interpreter (this venv's python) with the handler's folder on its path, as
Lambda lays it out, against the bench database (a running experiment, a catalog). What is timed in
each child, by scenario:

- `cold (no SnapStart)`: what an on-demand environment pays before its first answer: importing the
  handler module (init) and the first request (its database connection included);
- `restore, no priming`: SnapStart where init only imported the module: the snapshot holds the
  imported code, so the child imports untimed, forgets (the before-snapshot reset without priming),
  then times the after-restore hook and the first request;
- `restore, primed`: the same after `abtest.snapstart.before_snapshot` (every route resolved with the
  database blocked, templates compiled, numpy loaded where ranking happens): the shipped hooks;
- `warm`: the second request in the same process, for scale.

`import boto3` is timed in fresh processes of the same run, interleaved with the rows (rounds), so
load falls on all alike; ratios are against its median. What this cannot measure is the restore
itself (Lambda resuming the microVM's memory, and lazily paging it in), which AWS reports as "Restore
Duration" per invocation: the figures are the Python-side cost on either side of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence

from _harness import PROJECT_ROOT, environment_line, markdown_table, prepare

PYTHON = sys.executable
# Its own database: the PostgreSQL server may be shared with other checkouts' benchmarks, which
# reset theirs (abtest_bench) at start.
DATABASE = "abtest_bench_snapstart"
SCENARIOS = ("cold (no SnapStart)", "restore, no priming", "restore, primed")

# One representative first request per HTTP function (method, path, route key, body).
FIRST_REQUESTS: dict[str, tuple[str, str, str, dict[str, object] | None]] = {
    "assignments_handler": (
        "POST",
        "/api/v1/assignments",
        "POST /api/v1/assignments",
        {"experiment_id": "{experiment}", "user_id": "{user}"},
    ),
    "events_handler": (
        "POST",
        "/api/v1/events",
        "POST /api/v1/events",
        {
            "events": [
                {"type": "exposure", "experiment_id": "{experiment}", "user_id": "u0", "event_id": "{user}"}
            ]
        },
    ),
    "experiments_handler": ("GET", "/api/v1/experiments", "GET /api/v1/experiments", None),
    "metrics_handler": (
        "GET",
        "/api/v1/experiments/{experiment}/results",
        "GET /api/v1/experiments/{experiment_id}/results",
        None,
    ),
}

CHILD = """
import gc, json, sys, time, uuid
mode, module_name, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
from localdev.template import use_function_folders
use_function_folders()
from localdev.lambda_events import LocalLambdaContext, http_api_event

def event():
    text = json.dumps(spec["body"]).replace("{user}", "u-" + uuid.uuid4().hex) if spec["body"] else None
    params = {"experiment_id": spec["experiment"]} if "{experiment_id}" in spec["route_key"] else None
    return http_api_event(spec["method"], spec["path"], route_key=spec["route_key"],
                          path_parameters=params, headers={"content-type": "application/json"},
                          body=text, authorizer=spec["authorizer"])

def answer(module):
    reply = module.lambda_handler(event(), LocalLambdaContext())
    assert reply["statusCode"] in (200, 201), reply

if mode == "boto3":
    t0 = time.perf_counter(); import boto3; print(json.dumps({"total": time.perf_counter() - t0})); sys.exit()
if mode == "cold":
    t0 = time.perf_counter()
    module = __import__(module_name)
    answer(module)
    t1 = time.perf_counter()
else:
    module = __import__(module_name)
    from abtest import snapstart
    if mode == "primed":
        snapstart.before_snapshot(module.app, module.ROUTE_SCOPES)
    else:
        snapstart.forget()
    gc.collect()
    t0 = time.perf_counter()
    snapstart.after_restore()
    answer(module)
    t1 = time.perf_counter()
answer(module)
t2 = time.perf_counter()
print(json.dumps({"total": t1 - t0, "warm": t2 - t1}))
"""

MODES = {"cold (no SnapStart)": "cold", "restore, no priming": "restore", "restore, primed": "primed"}


def run_child(mode: str, module: str, spec: dict[str, object]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    out = subprocess.run(
        [PYTHON, "-c", CHILD, mode, module, json.dumps(spec)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} {module} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per row (medians)")
    args = parser.parse_args(argv)
    url = prepare(DATABASE)
    from _harness import AUTHORIZER, create_running_experiment

    variants = [{"name": "a", "weight": 0.5, "config": {}}, {"name": "b", "weight": 0.5, "config": {}}]
    experiment = create_running_experiment("snapstart-bench", variants)
    from abtest import wiring

    wiring.reset()
    specs = {
        module: {
            "method": method,
            "path": path.replace("{experiment}", experiment),
            "route_key": route_key,
            "body": json.loads(json.dumps(body).replace("{experiment}", experiment)) if body else None,
            "experiment": experiment,
            "authorizer": AUTHORIZER,
        }
        for module, (method, path, route_key, body) in FIRST_REQUESTS.items()
    }
    # One unmeasured run per child kind writes the bytecode (Lambda ships it: make build precompiles).
    run_child("boto3", "", {})
    for module, spec in specs.items():
        run_child("cold", module, spec)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    warm: dict[str, list[float]] = defaultdict(list)
    boto3: list[float] = []
    for _ in range(args.runs):
        boto3.append(run_child("boto3", "", {})["total"] * 1000)
        for module, spec in specs.items():
            for scenario, mode in MODES.items():
                result = run_child(mode, module, spec)
                samples[(module, scenario)].append(result["total"] * 1000)
                warm[module].append(result["warm"] * 1000)
    floor = statistics.median(boto3)
    rows = []
    for module in specs:
        row: list[object] = [module]
        for scenario in SCENARIOS:
            value = statistics.median(samples[(module, scenario)])
            row.append(f"{value:.1f} ms ({value / floor:.2f}x)")
        row.append(f"{statistics.median(warm[module]):.2f} ms")
        rows.append(row)
    print(f"# First request, cold and restored (bench_snapstart.py, {args.runs} processes per cell)\n")
    print(environment_line(url) + "\n")
    print(f"`import boto3` in a fresh process, same run: median {floor:.1f} ms (1.00x)\n")
    print(markdown_table(["handler", *SCENARIOS, "warm request"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
