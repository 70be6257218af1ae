"""Cold start of the real artifact: `sam build`'s output in the Lambda runtime's environment, in Docker.

    .venv/bin/python bench/bench_sam_cold_start.py --image "$(bash localdev/samimage/build.sh)" [--rounds 3]

Needs Docker and the SAM CLI (`make sam-local` sets both up). Each round starts `sam local start-lambda
--warm-containers LAZY` (the Runtime Interface Emulator behind the Lambda Invoke API, on 127.0.0.1), then
for every function sends one request into a container that does not exist yet (cold: the container is
created and started, the runtime interface client starts, the handler module and the layer are imported,
the first database connection is opened, the request is served) and then --warm requests into the same
container. Every round builds nothing: it reuses .samlocal/build from `localdev.samlocal` (precompiled,
x86_64), against a freshly seeded `abtest_samlocal`.

Two figures per request:
  - client: wall time of the Invoke API call, seen from this process;
  - emulator: the "Duration" of the emulator's REPORT line. The emulator starts the runtime lazily on the
    first invoke, so the import of the handler falls inside that Duration, and its "Init Duration" reads
    near zero (printed anyway).
Medians over rounds (cold) and over rounds x --warm (warm). Last, per function, the import of its
handler module alone inside the same image (`docker run` of python3.12 with the built function and
layer mounted read-only where Lambda puts them), --rounds times: the part of the cold start that is
this project's code and dependencies, next to bench_cold_start.py's in-process import figures.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from _harness import PROJECT_ROOT, environment_line, markdown_table

sys.path.insert(0, str(PROJECT_ROOT))
from localdev import samlocal
from localdev.lambda_events import http_api_event

REPORT = re.compile(r"REPORT RequestId: \S+\s+(?:Init Duration: ([\d.]+) ms\s+)?Duration: ([\d.]+) ms")


def requests(experiment_id: str, round_number: int) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per function, the requests in order (the first one is the cold one); `label` names each."""
    user = f"bench-user-{round_number}"
    body = json.dumps
    headers = {"content-type": "application/json"}
    path = f"/api/v1/experiments/{experiment_id}"
    return {
        "ExperimentsFunction": [
            ("GET /experiments?status=all", http_api_event("GET", "/api/v1/experiments", query="status=all")),
        ],
        "AssignmentsFunction": [
            (
                "POST /assignments",
                http_api_event(
                    "POST",
                    "/api/v1/assignments",
                    headers=headers,
                    body=body({"user_id": user, "experiment_id": experiment_id}),
                ),
            ),
        ],
        "EventsFunction": [
            (
                "POST /events (1 exposure)",
                http_api_event(
                    "POST",
                    "/api/v1/events",
                    headers=headers,
                    body=body(
                        {
                            "events": [
                                {
                                    "type": "exposure",
                                    "experiment_id": experiment_id,
                                    "user_id": user,
                                    "event_id": f"bench-{round_number}-{time.time_ns()}",
                                }
                            ]
                        }
                    ),
                ),
            ),
        ],
        "MetricsFunction": [
            (
                "GET /experiments/{id}/metrics",
                http_api_event(
                    "GET",
                    f"{path}/metrics",
                    route_key="GET /api/v1/experiments/{experiment_id}/metrics",
                    path_parameters={"experiment_id": experiment_id},
                ),
            ),
        ],
        "RollupFunction": [
            (
                "EventBridge schedule",
                json.loads((PROJECT_ROOT / "events" / "rollup_schedule.json").read_text()),
            ),
        ],
    }


def call(port: int, function: str, event: dict[str, Any]) -> tuple[float, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(),
        method="POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        payload = json.loads(response.read() or b"null")
    return (time.perf_counter() - started) * 1000, payload


def status(payload: Any) -> str:
    if isinstance(payload, dict) and "statusCode" in payload:
        return str(payload["statusCode"])
    return "ok" if isinstance(payload, dict) and "horizon" in payload else f"? {str(payload)[:80]}"


def new_reports(log_path: Path, seen: int) -> tuple[list[tuple[float | None, float]], int]:
    lines = log_path.read_text(errors="replace").splitlines()
    found = []
    for line in lines[seen:]:
        match = REPORT.search(line)
        if match:
            init = float(match.group(1)) if match.group(1) else None
            found.append((init, float(match.group(2))))
    return found, len(lines)


def create_running_experiment(port: int) -> str:
    """Through the ExperimentsFunction (its warm container afterwards): a running 50/50 experiment."""
    name = f"sam-bench-{time.time_ns()}"
    variants = [{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]
    event = http_api_event(
        "POST",
        "/api/v1/experiments",
        headers={"content-type": "application/json"},
        body=json.dumps({"name": name, "surface": "sam-bench", "variants": variants}),
    )
    _, created = call(port, "ExperimentsFunction", event)
    experiment_id = str(json.loads(created["body"])["id"])
    start = http_api_event(
        "PUT",
        f"/api/v1/experiments/{experiment_id}/status",
        route_key="PUT /api/v1/experiments/{experiment_id}/status",
        path_parameters={"experiment_id": experiment_id},
        headers={"content-type": "application/json"},
        body=json.dumps({"status": "running"}),
    )
    call(port, "ExperimentsFunction", start)
    return experiment_id


IMPORT_CODE = (
    "import time\n_t = time.perf_counter()\nimport {module}\nprint((time.perf_counter() - _t) * 1000)\n"
)


def import_in_image(image: str, function: str, runs: int) -> tuple[float, float]:
    """Median import time of the function's handler module inside the image (the built function at
    /var/task and the built layer at /opt, read-only, with the runtime's search path), and median wall
    time of the whole `docker run` (container start, interpreter start, import, exit)."""
    handler = samlocal.local_template("x86_64")["Resources"][function]["Properties"]["Handler"]
    module = handler.rsplit(".", 1)[0]
    path = "/var/task:/opt/python/lib/python3.12/site-packages:/opt/python:/var/runtime"
    command = ["docker", "run", "--rm", "--entrypoint", "/var/lang/bin/python3.12"]
    command += [
        "-v",
        f"{samlocal.BUILD_DIR / function}:/var/task:ro",
        "-v",
        f"{samlocal.BUILD_DIR / 'AbTestLayer'}:/opt:ro",
    ]
    # Not a path mechanism of the project: the Lambda runtime itself sets this search path in every
    # function (the image's bootstrap does the same); here it is set for a bare interpreter.
    command += ["-e", f"PYTHONPATH={path}", "-e", "LAMBDA_TASK_ROOT=/var/task"]
    command += [
        flag for name, value in samlocal.LOCAL_ENVIRONMENT.items() for flag in ("-e", f"{name}={value}")
    ]
    command += [image, "-c", IMPORT_CODE.format(module=module)]
    imports, walls = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        walls.append((time.perf_counter() - started) * 1000)
        imports.append(float(result.stdout.split()[-1]))
    return statistics.median(imports), statistics.median(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="base image (localdev/samimage/build.sh prints it)")
    parser.add_argument("--rounds", type=int, default=3, help="server restarts: cold samples per function")
    parser.add_argument("--warm", type=int, default=5, help="warm requests per function and round")
    parser.add_argument("--port", type=int, default=3002)
    args = parser.parse_args()

    samlocal.prepare(args.image, "x86_64")
    command = [
        samlocal.sam_executable(),
        "local",
        "start-lambda",
        "--template",
        str(samlocal.BUILT_TEMPLATE),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--warm-containers",
        "LAZY",
        *samlocal.image_options(args.image),
    ]
    cold: dict[str, list[tuple[float, float]]] = {}
    warm: dict[str, list[tuple[float, float]]] = {}
    inits: list[float] = []
    labels: dict[str, str] = {}
    statuses: dict[str, set[str]] = {}
    log_path = samlocal.WORK / "bench-start-lambda.log"
    for round_number in range(args.rounds):
        samlocal.remove_containers()
        with samlocal.running(command, args.port, log_path):
            # The experiment is made before the timed requests, so ExperimentsFunction is made cold again
            # by a server restart in a second server below; the other functions are cold here.
            experiment_id = create_running_experiment(args.port)
        seen = 0
        with samlocal.running(command, args.port, log_path):
            for function, calls in requests(experiment_id, round_number).items():
                label, event = calls[0]
                labels[function] = label
                for index in range(1 + args.warm):
                    client_ms, payload = call(args.port, function, event)
                    statuses.setdefault(function, set()).add(status(payload))
                    reports, seen = new_reports(log_path, seen)
                    emulator_ms = reports[-1][1] if reports else float("nan")
                    if reports and reports[-1][0] is not None:
                        inits.append(reports[-1][0])  # type: ignore[arg-type]
                    target = cold if index == 0 else warm
                    target.setdefault(function, []).append((client_ms, emulator_ms))
        print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    samlocal.remove_containers()

    def median(samples: list[tuple[float, float]], which: int) -> float:
        return statistics.median(sample[which] for sample in samples)

    imports = {function: import_in_image(args.image, function, args.rounds) for function in cold}

    rows = []
    for function in cold:
        cold_client, warm_client = median(cold[function], 0), median(warm[function], 0)
        cold_emulator, warm_emulator = median(cold[function], 1), median(warm[function], 1)
        rows.append(
            [
                function,
                labels[function],
                "/".join(sorted(statuses[function])),
                f"{cold_client:,.0f}",
                f"{warm_client:,.0f}",
                f"{cold_emulator:,.0f}",
                f"{warm_emulator:,.1f}",
                f"{cold_emulator - warm_emulator:,.0f}",
                f"{imports[function][0]:,.0f} / {imports[function][1]:,.0f}",
            ]
        )
    print(environment_line())
    print(f"rounds {args.rounds}, warm requests per round {args.warm}; image {args.image}")
    print(
        markdown_table(
            [
                "function",
                "request",
                "status",
                "cold, client ms",
                "warm, client ms",
                "cold, emulator ms",
                "warm, emulator ms",
                "cold - warm, emulator ms",
                "import in the image / docker run, ms",
            ],
            rows,
        )
    )
    if inits:
        print(f"emulator 'Init Duration': median {statistics.median(inits):.2f} ms over {len(inits)} reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
