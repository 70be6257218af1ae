"""`python -m localdev serve|migrate|seed|demo|invoke`: the entry points behind `make run`, `make seed`, ...

`serve` finds or starts PostgreSQL, applies the migrations, loads the demo catalog if the catalog is
empty, creates the report's demo experiment (several days of simulated traffic, for the HTML report)
unless it exists or `--no-demo` is given, and serves the API on 127.0.0.1:3000. `seed` (re)loads the
demo catalog, creates the draft demo experiment the files in events/ name, and creates the report's
demo experiment if missing; `demo` only the latter.
`invoke FUNCTION EVENT_FILE` calls one function of template.yaml with an event file, like
`sam local invoke FUNCTION -e EVENT_FILE`, and prints its response.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from localdev.postgres import PROJECT_ROOT, database_url
from localdev.template import use_function_folders

LOCAL_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "abtest-local",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestLocal",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    # Locally, a started or paused experiment should show up at once, not after the AWS default TTL.
    "EXPERIMENT_CACHE_TTL_SECONDS": "1",
    # "Local, no auth": scopes are not checked, and the server refuses to bind beyond 127.0.0.1.
    # Start it with --auth jwt to check development tokens (python -m localdev token) instead.
    "AUTH_MODE": "none",
    # Webhooks (docs/alerts.md): http to 127.0.0.1 allowed, secrets sealed with a local key file.
    "WEBHOOK_LOCAL_MODE": "true",
    "WEBHOOK_KEY_FILE": str(PROJECT_ROOT / ".webhook-key"),
}


def prepare(database: str) -> str:
    """Point this process at a migrated local database and the layer, as Lambda would see them."""
    for key, value in LOCAL_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    url = database_url(database)
    os.environ["DATABASE_URL"] = url
    use_function_folders()
    from abtest.storage.database import get_database
    from abtest.storage.schema import apply_migrations

    applied = get_database().run(apply_migrations, transaction=False)
    if applied:
        print(f"migrations applied: {', '.join(applied)}", flush=True)
    return url


def invoke(function: str, event_file: Path) -> int:
    """Call one function's handler with an event file and print the result as JSON."""
    from localdev.lambda_events import LocalLambdaContext
    from localdev.template import Route, load_template

    resources = load_template()["Resources"]
    if resources.get(function, {}).get("Type") != "AWS::Serverless::Function":
        names = sorted(k for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function")
        print(f"no function {function!r} in template.yaml; functions: {', '.join(names)}", file=sys.stderr)
        return 2
    properties = resources[function]["Properties"]
    route = Route("", "", function, (PROJECT_ROOT / properties["CodeUri"]).resolve(), properties["Handler"])
    event = json.loads(event_file.read_text(encoding="utf-8"))
    result = route.load()(event, LocalLambdaContext(function_name=function))
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev")
    parser.add_argument("command", choices=["serve", "migrate", "seed", "demo", "invoke", "token", "openapi"])
    parser.add_argument("function", nargs="?", help="invoke: logical id in template.yaml")
    parser.add_argument("event", nargs="?", help="invoke: path of an event JSON file (see events/)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--database", default="abtest", help="local database name (default abtest)")
    parser.add_argument(
        "--auth",
        choices=["none", "jwt"],
        default="none",
        help="none: local, no auth (127.0.0.1 only); jwt: check scopes of development tokens",
    )
    parser.add_argument("--workers", type=int, default=16, help="serve: worker threads per process")
    parser.add_argument(
        "--processes", type=int, default=1, help="serve: server processes sharing the port (forked)"
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=None,
        help="serve: requests waiting or running per process before 503 overloaded (default 8 x workers)",
    )
    parser.add_argument(
        "--no-demo", action="store_true", help="serve: do not create the demo experiment when it is missing"
    )
    parser.add_argument("--scopes", default="admin,read,ingest", help="token: comma-separated scopes")
    parser.add_argument(
        "--subject", default="local-developer", help="token: its subject (sub), the audit log's actor"
    )
    args = parser.parse_args(argv)
    if args.command == "openapi":
        from localdev.openapi import SPEC_PATH, write

        use_function_folders()
        write()
        print(f"wrote {SPEC_PATH.relative_to(PROJECT_ROOT)}")
        return 0
    if args.command == "token":
        from localdev.auth import development_token

        print(development_token(args.scopes.split(","), subject=args.subject))
        return 0
    if args.command == "serve" and args.host not in ("127.0.0.1", "localhost", "::1"):
        # Neither mode is safe beyond this machine: "none" checks nothing, "jwt" trusts unsigned tokens.
        parser.error("the local server accepts unsigned or no tokens: it binds to 127.0.0.1 only")
    os.environ["AUTH_MODE"] = args.auth
    if args.command == "invoke" and not (args.function and args.event):
        parser.error(
            "invoke needs FUNCTION and EVENT_FILE (e.g. ExperimentsFunction events/list_experiments.json)"
        )
    prepare(args.database)
    if args.command == "invoke":
        return invoke(args.function, Path(args.event))
    if args.command in ("serve", "seed"):
        from localdev.seed import seed

        loaded = seed(force=args.command == "seed")
        if loaded:
            print(f"demo catalog loaded: {loaded} items", flush=True)
    if args.command == "seed":
        from localdev.seed import seed_demo_experiment

        demo = seed_demo_experiment()
        print(f"demo experiment {demo.name} ({demo.id}): {demo.status.value}", flush=True)
    if args.command == "demo" or (args.command in ("serve", "seed") and not args.no_demo):
        from localdev.demo import create_demo

        experiment_id, created = create_demo()
        state = "created" if created else "exists"
        print(
            f"demo experiment {state}: http://{args.host}:{args.port}/api/v1/experiments/{experiment_id}/report",
            flush=True,
        )
    if args.command == "serve":
        from localdev.server import serve

        serve(
            args.host,
            args.port,
            workers=args.workers,
            check_tokens=args.auth == "jwt",
            processes=args.processes,
            max_pending=args.max_pending,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
