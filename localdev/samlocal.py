"""`python -m localdev.samlocal`: the real `sam local` (SAM CLI + Lambda Runtime Interface Emulator in
Docker) against the local PostgreSQL, behind `make sam-local` and `make sam-api`.

    invoke-all --image IMAGE        sam build, then `sam local invoke` for every file in events/, checking
                                    each answer against EXPECTED below (exit 1 on any difference)
    start-api --image IMAGE --port  sam build, then `sam local start-api` on 127.0.0.1:PORT
    api-check --image IMAGE --port  the same in the background, and the docs' curl walks against it
                                    (localdev/walks.py)

IMAGE is the Lambda base image (`localdev/samimage/build.sh` builds one offline and prints its name), or
`pull` to let the SAM CLI pull AWS's own image where a registry is reachable.

What runs is what `sam build` makes of template.yaml, with only what a local run needs changed, in a
generated copy (.samlocal/template.json; template.yaml itself is never edited):
  - x86_64 instead of arm64 (functions and layer; --arch arm64 keeps arm64 for an arm64 machine);
  - code paths made absolute, since the copy lives in .samlocal/;
  - no JWT authorizer, and AUTH_MODE=none: "local, no auth" as under `make run`;
  - DATABASE_URL and POWERTOOLS_TRACE_DISABLED declared, so that --env-vars can set them (the SAM CLI
    only sets variables the template declares); parameters without a default get a placeholder.
The build is precompiled like `make build`'s. The database is `abtest_samlocal` on the PostgreSQL at
127.0.0.1:5432 (never the tests' or `make run`'s), dropped, migrated and seeded at every start through
`python -m localdev seed`. The containers reach it through a relay this process runs on the Docker
bridge's gateway address (a free port, for as long as the command runs): the SAM CLI publishes the
emulator's port and so never puts a function's container in the host network (`--docker-network host`
is accepted and ignored), and the PostgreSQL here listens on 127.0.0.1 only. SAM_LOCAL_DATABASE_URL
instead names a database the containers reach by themselves (then nothing is dropped or seeded).

Only the SAM CLI, Docker and this project's CLIs are run (as subprocesses); nothing of the layer is
imported here.
"""

# This module's whole job is running the SAM CLI, docker and this project's CLIs, with fixed arguments.
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from localdev.layer import trim
from localdev.walks import walk_outcome, walk_script

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".samlocal"
TEMPLATE = ROOT / "template.yaml"
LOCAL_TEMPLATE = WORK / "template.json"
BUILD_DIR = WORK / "build"
BUILT_TEMPLATE = BUILD_DIR / "template.yaml"
ENV_FILE = WORK / "env.json"
EVENTS_DIR = ROOT / "events"
DATABASE = "abtest_samlocal"
# The server `make run` and the tests use first (localdev.postgres); a container reaches it on the host
# network. The embedded fallback server is private to the process that starts it, so it cannot serve here.
ADMIN_URLS = ("postgresql://postgres@127.0.0.1:5432/postgres",)
PYTHON312 = os.environ.get("PY312_VERSION", "3.12.1")
# What the functions see beside the template's own variables (values for the ones declared above).
LOCAL_ENVIRONMENT = {
    "AUTH_MODE": "none",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "abtest-samlocal",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestLocal",
    # As under `make run`: a started experiment shows up within a second in a warm container.
    "EXPERIMENT_CACHE_TTL_SECONDS": "1",
    # No KMS key, queue or bus locally (empty values count as unset): webhooks as under `make run`,
    # sealed with a key file inside the container.
    "WEBHOOK_KMS_KEY_ID": "",
    "WEBHOOK_QUEUE_URL": "",
    "ALERT_EVENT_BUS": "",
    "WEBHOOK_LOCAL_MODE": "true",
    "WEBHOOK_KEY_FILE": "/tmp/abtest-webhook.key",  # noqa: S108 (the only writable folder in a Lambda container)
}


@dataclass(frozen=True)
class Expected:
    """What invoking `function` with events/`file` must answer."""

    file: str
    function: str
    status: int | None  # the HTTP status; None for a non-HTTP event (then `keys` must be in the answer)
    note: str
    keys: tuple[str, ...] = ()
    created_id: bool = False  # the path's experiment id is replaced by the one create_experiment made


# Every file in events/, in the order invoked. The fixture experiment is made through an invoke first:
# the ids written in get_experiment.json and start_experiment.json exist in no fresh database.
EXPECTED = (
    Expected("list_experiments.json", "ExperimentsFunction", 200, "listing, ?status=all"),
    Expected("create_experiment.json", "ExperimentsFunction", 201, "creates the fixture experiment"),
    Expected("get_experiment.json", "ExperimentsFunction", 200, "reads it", created_id=True),
    Expected("start_experiment.json", "ExperimentsFunction", 200, "draft -> running", created_id=True),
    Expected(
        "rollup_schedule.json",
        "RollupFunction",
        None,
        "EventBridge schedule: a rollup summary",
        keys=("horizon", "users", "experiments", "failed_experiments", "snapshot_days"),
    ),
)


class Failure(Exception):
    """A step that cannot go on; its message says why."""


def log(message: str) -> None:
    print(f"samlocal: {message}", file=sys.stderr, flush=True)


# ---- The local template ----------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form intrinsics (!Ref, !Sub, ...) as their long JSON form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def local_template(arch: str) -> dict[str, Any]:
    """template.yaml with the local changes the module docstring lists."""
    template: dict[str, Any] = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    for parameter in template.get("Parameters", {}).values():
        parameter.setdefault("Default", "local")
    function_globals = template["Globals"]["Function"]
    function_globals["Architectures"] = [arch]
    variables = function_globals["Environment"]["Variables"]
    for name in ("DATABASE_URL", *LOCAL_ENVIRONMENT):
        variables[name] = LOCAL_ENVIRONMENT.get(name, "")
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function":
            properties["CodeUri"] = str((ROOT / properties["CodeUri"]).resolve())
            for event in properties.get("Events", {}).values():
                event.get("Properties", {}).pop("Auth", None)
        elif kind == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = str((ROOT / properties["ContentUri"]).resolve())
            properties["CompatibleArchitectures"] = [arch]
            resource.setdefault("Metadata", {})["BuildArchitecture"] = arch
        elif kind == "AWS::Serverless::HttpApi":
            properties.pop("Auth", None)
    return template


def write_if_changed(path: Path, text: str) -> None:
    """Keep the file (and its mtime, which the SAM CLI's build cache reads) when nothing changed."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def sam_executable() -> str:
    sam = os.environ.get("SAM") or str(ROOT / ".aws-sam" / "venv" / "bin" / "sam")
    if not Path(sam).exists() and not shutil.which(sam):
        raise Failure(f"no SAM CLI at {sam} (make sam-local installs it; or set SAM)")
    return sam


def sam_environment() -> dict[str, str]:
    """The SAM CLI's environment: no telemetry, and the runtime's Python (pyenv's 3.12) for the build."""
    env = dict(os.environ, SAM_CLI_TELEMETRY="0", PYENV_VERSION=PYTHON312)
    env.pop("DATABASE_URL", None)
    return env


def build(arch: str) -> None:
    """`sam build` of the local template into .samlocal/build, trimmed and precompiled like `make build`."""
    template = local_template(arch)
    text = json.dumps(template, indent=1, sort_keys=True) + "\n"
    write_if_changed(LOCAL_TEMPLATE, text)
    log(f"sam build ({arch}) -> {BUILD_DIR.relative_to(ROOT)}")
    started = time.monotonic()
    command = [
        sam_executable(),
        "build",
        "--template",
        str(LOCAL_TEMPLATE),
        "--build-dir",
        str(BUILD_DIR),
        "--cached",
        "--cache-dir",
        str(WORK / "build-cache"),
        "--parallel",
    ]
    run_quietly(command, sam_environment(), "sam build")
    # The layers (AbTestLayer, NumpyLayer) as `make build` ships them: without what the runtime provides,
    # nor unused files.
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            trim(BUILD_DIR / logical_id / "python")
    run_quietly(
        ["python3.12", "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", BUILD_DIR],
        sam_environment(),
        "compileall",
    )
    log(f"built in {time.monotonic() - started:.0f} s")


def run_quietly(command: Sequence[str | Path], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Failure(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


# ---- Docker and the database -----------------------------------------------------------------------------


def check_docker() -> None:
    if not shutil.which("docker"):
        raise Failure("no docker command: the real `sam local` runs functions in containers")
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Failure(f"Docker is not running (docker info: {result.stderr.strip()[-300:]})")


def prepare_database() -> str:
    """Drop and re-create `abtest_samlocal`, migrate and seed it (localdev's CLI); return its URL."""
    import psycopg
    from psycopg import sql

    admin = None
    for url in ADMIN_URLS:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(url, connect_timeout=3, autocommit=True) as conn,
        ):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
            admin = url
            break
    if admin is None:
        raise Failure(f"no PostgreSQL answers at {', '.join(ADMIN_URLS)}: the containers need one on TCP")
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    log(f"database {DATABASE}: migrate and seed (python -m localdev seed)")
    run_quietly(
        [sys.executable, "-m", "localdev", "seed", "--database", DATABASE], env, "python -m localdev seed"
    )
    return urlunsplit(urlsplit(admin)._replace(path=f"/{DATABASE}"))


class Relay:
    """A TCP relay from `listen_host` (the Docker bridge's gateway) to a server on this machine."""

    def __init__(self, listen_host: str, target: tuple[str, int]) -> None:
        import asyncio
        import threading

        self.target = target
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0
        self.error: BaseException | None = None

        async def serve() -> None:
            try:
                server = await asyncio.start_server(self.connection, listen_host, 0)
                self.port = server.sockets[0].getsockname()[1]
            except OSError as error:
                self.error = error
            finally:
                ready.set()

        threading.Thread(target=self.loop.run_forever, daemon=True, name="samlocal-relay").start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop)
        ready.wait(10)
        if self.error or not self.port:
            raise Failure(f"cannot listen on {listen_host} for the containers' database relay: {self.error}")

    async def connection(self, reader: Any, writer: Any) -> None:
        import asyncio

        async def pipe(source: Any, sink: Any) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(OSError):
                sink.close()

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge, which containers route to."""
    import ipaddress

    result = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    with contextlib.suppress(ValueError, IndexError, KeyError):
        config = json.loads(result.stdout)[0]
        return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])
    raise Failure(f"cannot read the Docker bridge's gateway: {result.stdout.strip()} {result.stderr.strip()}")


def container_database_url(local_url: str) -> str:
    """The URL by which the containers reach `local_url` (on 127.0.0.1), through a relay."""
    parts = urlsplit(local_url)
    gateway = bridge_gateway()
    relay = Relay(gateway, (parts.hostname or "127.0.0.1", parts.port or 5432))
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{gateway}:{relay.port}"))


def write_env_file(database_url: str) -> None:
    """--env-vars: the same values for every function ("Parameters")."""
    values = {"DATABASE_URL": database_url, **LOCAL_ENVIRONMENT}
    ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    ENV_FILE.write_text(json.dumps({"Parameters": values}, indent=1) + "\n", encoding="utf-8")


def image_options(image: str) -> list[str]:
    options = ["--env-vars", str(ENV_FILE)]
    if image != "pull":
        options += ["--invoke-image", image, "--skip-pull-image"]
    return options


def prepare(image: str, arch: str) -> None:
    check_docker()
    WORK.mkdir(exist_ok=True)
    given = os.environ.get("SAM_LOCAL_DATABASE_URL")
    write_env_file(given or container_database_url(prepare_database()))
    build(arch)


# ---- sam local invoke ------------------------------------------------------------------------------------


@dataclass
class Invocation:
    payload: Any
    seconds: float
    report: str  # the emulator's REPORT line (durations), if it printed one


def invoke(function: str, event_file: Path, image: str) -> Invocation:
    """One `sam local invoke`: a new container, the function's answer parsed from stdout."""
    command = [
        sam_executable(),
        "local",
        "invoke",
        function,
        "--template",
        str(BUILT_TEMPLATE),
        "--event",
        str(event_file),
        *image_options(image),
    ]
    started = time.monotonic()
    result = subprocess.run(command, env=sam_environment(), capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    report = next((line for line in result.stderr.splitlines() if "REPORT RequestId" in line), "")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        payload = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise Failure(
            f"{function} {event_file.name}: no JSON answer (exit {result.returncode})\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}"
        ) from None
    return Invocation(payload, seconds, report)


def with_experiment_id(event: dict[str, Any], experiment_id: str) -> dict[str, Any]:
    """The event with its path's experiment id replaced."""
    old = event["pathParameters"]["experiment_id"]
    text = json.dumps(event).replace(old, experiment_id)
    result: dict[str, Any] = json.loads(text)
    return result


def check(expected: Expected, payload: Any) -> tuple[bool, str]:
    """Whether the answer is what EXPECTED says, and a short description of it."""
    if not isinstance(payload, dict):
        return False, f"not an object: {str(payload)[:200]}"
    if expected.status is None:
        missing = [key for key in expected.keys if key not in payload]
        return not missing, f"keys {sorted(payload)}" + (f", missing {missing}" if missing else "")
    status = payload.get("statusCode")
    body = str(payload.get("body", ""))
    return status == expected.status, f"{status} {body[:160]}"


def invoke_all(image: str) -> int:
    files = sorted(path.name for path in EVENTS_DIR.glob("*.json"))
    listed = [expected.file for expected in EXPECTED]
    unlisted = sorted(set(files) - set(listed))
    missing = sorted(set(listed) - set(files))
    if unlisted or missing:
        raise Failure(f"EXPECTED in localdev/samlocal.py and events/ differ: new {unlisted}, gone {missing}")
    experiment_id = ""
    failures = 0
    generated = WORK / "events"
    generated.mkdir(parents=True, exist_ok=True)
    print(f"{'event':<26} {'function':<20} {'expected':>8}  {'seconds':>7}  answer")
    for expected in EXPECTED:
        path = EVENTS_DIR / expected.file
        if expected.created_id:
            if not experiment_id:
                raise Failure(f"{expected.file} needs the experiment create_experiment.json makes")
            event = with_experiment_id(json.loads(path.read_text(encoding="utf-8")), experiment_id)
            path = generated / expected.file
            path.write_text(json.dumps(event, indent=1), encoding="utf-8")
        invocation = invoke(expected.function, path, image)
        ok, answer = check(expected, invocation.payload)
        failures += not ok
        mark = "ok " if ok else "BAD"
        want = expected.status if expected.status is not None else "summary"
        seconds = invocation.seconds
        print(f"{expected.file:<26} {expected.function:<20} {want!s:>8}  {seconds:7.1f}  {mark} {answer}")
        if expected.file == "create_experiment.json" and ok:
            experiment_id = json.loads(invocation.payload["body"])["id"]
    print(f"sam local invoke: {len(EXPECTED) - failures} of {len(EXPECTED)} event files answered as expected")
    return 1 if failures else 0


# ---- sam local start-api ---------------------------------------------------------------------------------


def start_api_command(image: str, port: int) -> list[str]:
    return [
        sam_executable(),
        "local",
        "start-api",
        "--template",
        str(BUILT_TEMPLATE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--warm-containers",
        "LAZY",
        *image_options(image),
    ]


@contextlib.contextmanager
def running(command: Sequence[str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a `sam local start-*` server and wait until it accepts connections; stop it afterwards."""
    import socket

    with log_path.open("wb") as output:
        process = subprocess.Popen(command, env=sam_environment(), stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise Failure(f"{command[2]} exited ({process.returncode}): see {log_path}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise Failure(f"{command[2]} did not listen on {port} within 120 s: see {log_path}")
                time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def remove_containers() -> None:
    """Containers the emulator left behind (a killed `sam local` can leave them), by the image's label."""
    result = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = result.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - 127.0.0.1 only
        return json.loads(response.read())


def api_check(image: str, port: int) -> int:
    """`sam local start-api` in the background, the docs' curl walks against it (`localdev/walks.py`),
    then stop it."""
    base_url = f"http://127.0.0.1:{port}"
    try:
        script = walk_script(base_url)
    except ValueError as error:
        raise Failure(str(error)) from error
    log_path = WORK / "start-api.log"
    with running(start_api_command(image, port), port, log_path):
        result = subprocess.run(["bash", "-c", script], check=False)
        problems = ["a request failed"] if result.returncode else []
        if not problems:
            problems = walk_outcome(get_json, base_url)
    remove_containers()
    if problems:
        log(f"the docs' curl walks against sam local start-api: {'; '.join(problems)} (log: {log_path})")
        return 1
    print("docs' curl walks: every request answered as documented through sam local start-api")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.samlocal", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["invoke-all", "start-api", "api-check", "template"])
    parser.add_argument("--image", default="pull", help="base image (localdev/samimage/build.sh), or pull")
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"])
    parser.add_argument("--port", type=int, default=3001, help="start-api: port on 127.0.0.1 (default 3001)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[\w./:@-]+", args.image):
        parser.error(f"not an image name: {args.image!r}")
    try:
        if args.command == "template":
            print(json.dumps(local_template(args.arch), indent=1, sort_keys=True))
            return 0
        prepare(args.image, args.arch)
        if args.command == "invoke-all":
            return invoke_all(args.image)
        if args.command == "api-check":
            return api_check(args.image, args.port)
        log(f"sam local start-api on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
        command = start_api_command(args.image, args.port)
        return subprocess.run(command, env=sam_environment(), check=False).returncode
    except Failure as failure:
        log(str(failure))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
