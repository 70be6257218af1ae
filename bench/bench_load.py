"""Capacity under load: the local server (several processes) under a realistic mix at rising concurrency.

    .venv/bin/python bench/bench_load.py [--steps 2,4,8,16,32,64] [--seconds 20] [--processes 2]
                                         [--workers 8] [--ingest direct|buffered]

Starts `python -m localdev serve` on 127.0.0.1 (a free port, its own database `abtest_bench_load`,
emptied and migrated first,
`--processes` forked servers of `--workers` threads each), creates a running experiment and
pre-assigns the returning users, then runs locust (bench/locustfile_load.py, headless, closed loop,
no think time) once per step for `--seconds`, with as many users as the step says. All traffic goes to
127.0.0.1; every step and the whole run are bounded in time; the server is stopped at the end.

Per step: throughput, p50/p95/p99 (ms), errors (anything but 2xx and a 503 with Retry-After), requests
shed (503 + Retry-After), the CPU seconds per request of the server processes and of PostgreSQL (the
database's share), the machine's CPU use, and the most connections PostgreSQL held. Saturation is
the first step whose throughput grows by less than 10% over the step before; its cause is read from
the CPU figures. Locust runs on the same two cores: its own CPU share is printed too, since it takes
capacity from the server (the figures are a lower bound of what the code can serve).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from _harness import PROJECT_ROOT, environment_line, markdown_table, prepare

DATABASE = "abtest_bench_load"
LOCUSTFILE = Path(__file__).with_name("locustfile_load.py")
RETURNING_USERS = 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class CpuMeter:
    """CPU seconds of groups of processes between start() and stop(), sampled every 0.5 s (so
    processes that come and go, such as PostgreSQL backends, are counted)."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self._groups = groups  # name -> callable returning the group's processes
        self._last: dict[int, tuple[str, float]] = {}
        self.seconds: dict[str, float] = dict.fromkeys(groups, 0.0)
        self.max_connections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.machine_busy = 0.0

    def _sample(self) -> None:
        for name, processes in self._groups.items():
            for process in processes():
                try:
                    times = process.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                used = times.user + times.system
                _, before = self._last.get(process.pid, (name, used))
                self.seconds[name] += max(used - before, 0.0)
                self._last[process.pid] = (name, used)
        self.max_connections = max(self.max_connections, len(_backends()))

    def start(self) -> None:
        psutil.cpu_percent()
        self._sample()
        self.seconds = dict.fromkeys(self._groups, 0.0)

        def run() -> None:
            while not self._stop.wait(0.5):
                self._sample()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self.machine_busy = psutil.cpu_percent()


def _cmdline(process: Any) -> list[str]:
    try:
        return list(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _postgres() -> list[Any]:
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postgres.exe"):
            found.append(process)
    return found


def _backends() -> list[Any]:
    """PostgreSQL's processes serving this benchmark's database (the machine is shared: other
    databases' backends are not ours; the server-wide writer and checkpointer are left out too)."""
    return [p for p in _postgres() if DATABASE in " ".join(_cmdline(p))]


def run_step(base: str, users: int, seconds: int, env: dict[str, str], out: Path) -> dict[str, Any]:
    prefix = out / f"step_{users}"
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--host",
        base,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
    ]
    locust = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    locust_process = psutil.Process(locust.pid)
    server_pids = {int(pid) for pid in env["LOAD_SERVER_PIDS"].split(",")}
    meter = CpuMeter(
        {
            "server": lambda: [p for p in psutil.process_iter() if p.pid in server_pids],
            "postgres": _backends,
            "locust": lambda: [locust_process],
        }
    )
    meter.start()
    try:
        _, stderr = locust.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        locust.kill()
        raise
    finally:
        meter.stop()
    with open(f"{prefix}_stats.csv", encoding="utf-8") as file:
        stats = list(csv.DictReader(file))
    with open(f"{prefix}_failures.csv", encoding="utf-8") as file:
        failures = list(csv.DictReader(file))
    total = next(row for row in stats if row["Name"] == "Aggregated")
    shed = sum(int(row["Occurrences"]) for row in failures if "503 shed" in row["Error"])
    errors = sum(int(row["Occurrences"]) for row in failures if "503 shed" not in row["Error"])
    error_kinds = sorted({row["Error"][:60] for row in failures if "503 shed" not in row["Error"]})
    count = int(total["Request Count"])
    per_request = {name: 1000 * value / count if count else 0.0 for name, value in meter.seconds.items()}
    return {
        "users": users,
        "requests": count,
        "rps": float(total["Requests/s"]),
        "p50": float(total["50%"]),
        "p95": float(total["95%"]),
        "p99": float(total["99%"]),
        "errors": errors,
        "error_kinds": error_kinds,
        "shed": shed,
        "server_cpu_ms": per_request["server"],
        "db_cpu_ms": per_request["postgres"],
        "locust_cpu_ms": per_request["locust"],
        "machine_busy": meter.machine_busy,
        "connections": meter.max_connections,
        "per_name": {row["Name"]: (float(row["50%"]), float(row["95%"]), float(row["99%"])) for row in stats},
        "stderr": stderr.decode()[-500:] if locust.returncode not in (0, 1) else "",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="2,4,8,16,32,64", help="concurrent users per step")
    parser.add_argument("--seconds", type=int, default=20, help="length of each step")
    parser.add_argument("--processes", type=int, default=2, help="local server processes")
    parser.add_argument("--workers", type=int, default=8, help="worker threads per server process")
    parser.add_argument("--ingest", choices=["direct", "buffered"], default="direct")
    args = parser.parse_args(argv)
    steps = [int(step) for step in args.steps.split(",")]

    url = prepare(DATABASE)  # an empty, migrated database: every run starts alike
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env.update(
        DATABASE_URL=url,
        INGEST_MODE=args.ingest,
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    out = Path(tempfile.mkdtemp(prefix="bench-load-"))
    log = (out / "server.log").open("wb")  # closed in the finally below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localdev",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            DATABASE,
            "--no-demo",
            "--processes",
            str(args.processes),
            "--workers",
            str(args.workers),
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if call(base, "GET", "/api/v1/experiments?limit=1")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError((out / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        time.sleep(1)  # the forked processes
        name = f"load-{int(time.time())}"
        variants = [
            {"name": "control", "weight": 0.5, "config": {}},
            {"name": "treatment", "weight": 0.5, "config": {}},
        ]
        status, created = call(
            base,
            "POST",
            "/api/v1/experiments",
            {"name": name, "traffic_allocation": 1.0, "variants": variants},
        )
        assert status == 201, created
        experiment = created["id"]
        assert call(base, "PUT", f"/api/v1/experiments/{experiment}/status", {"status": "running"})[0] == 200

        def assign(n: int) -> int:
            return call(
                base, "POST", "/api/v1/assignments", {"experiment_id": experiment, "user_id": f"ret-{n}"}
            )[0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(assign, range(RETURNING_USERS))) == {200}
        children = psutil.Process(server.pid).children()
        pids = [server.pid, *(child.pid for child in children)]
        step_env = {
            **env,
            "LOAD_EXPERIMENT_ID": experiment,
            "LOAD_RETURNING_USERS": str(RETURNING_USERS),
            "LOAD_SERVER_PIDS": ",".join(map(str, pids)),
        }
        results = [run_step(base, users, args.seconds, step_env, out) for users in steps]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    saturated = None
    for before, after in itertools.pairwise(results):
        if after["rps"] < before["rps"] * 1.10:
            saturated = before
            break

    def share(r: dict[str, Any]) -> float:
        return 100 * r["db_cpu_ms"] / max(r["server_cpu_ms"] + r["db_cpu_ms"], 1e-9)

    rows = [
        [
            r["users"],
            f"{r['rps']:.0f}",
            f"{r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f}",
            r["errors"],
            r["shed"],
            f"{r['server_cpu_ms']:.2f}",
            f"{r['db_cpu_ms']:.2f} ({share(r):.0f}%)",
            f"{r['locust_cpu_ms']:.2f}",
            f"{r['machine_busy']:.0f}%",
            r["connections"],
        ]
        for r in results
    ]
    print(
        f"# Load: local server, {args.processes} processes x {args.workers} threads, "
        f"ingestion {args.ingest}\n"
    )
    print(environment_line(url) + "\n")
    print(
        f"Steps of {args.seconds} s, closed loop (no think time); mix per 37 requests: 8 new-user and "
        "12 returning-user assignments, 8 recommendations, 6 conversions, 2 batches of 20 events, "
        "1 results read.\n"
    )
    print(
        markdown_table(
            [
                "users",
                "req/s",
                "p50 / p95 / p99 ms",
                "errors",
                "shed (503)",
                "server CPU ms/req",
                "PostgreSQL CPU ms/req (DB share)",
                "locust CPU ms/req",
                "machine CPU",
                "max DB connections",
            ],
            rows,
        )
    )
    if saturated is not None:
        cause = "CPU (both cores busy)" if saturated["machine_busy"] >= 85 else "not CPU-bound: see the table"
        print(
            f"\nSaturation: throughput stops growing after {saturated['users']} users "
            f"({saturated['rps']:.0f} req/s); cause: {cause}."
        )
    else:
        print("\nNo saturation within these steps: throughput still grew by 10% or more at each step.")
    first, last = results[0], results[-1]
    print(
        f"\nPer request kind, p50 / p95 / p99 ms, at {first['users']} user(s) (uncontended: about each "
        f"kind's own cost) and at {last['users']} users:\n"
    )
    kinds = sorted(last["per_name"])
    print(
        markdown_table(
            ["request", f"{first['users']} user(s)", f"{last['users']} users"],
            [
                [
                    name,
                    " / ".join(f"{v:.0f}" for v in first["per_name"].get(name, ())),
                    " / ".join(f"{v:.0f}" for v in last["per_name"][name]),
                ]
                for name in kinds
            ],
        )
    )
    for r in results:
        if r["error_kinds"] or r["stderr"]:
            print(f"\nstep {r['users']}: {r['error_kinds']} {r['stderr']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
