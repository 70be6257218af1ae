"""`python -m localdev serve|migrate`: the entry points behind `make run`.

`serve` finds or starts PostgreSQL, applies the migrations and serves the API on 127.0.0.1:3000.
"""

from __future__ import annotations

import argparse
import os
import sys

from localdev.postgres import database_url
from localdev.template import layer_paths

LOCAL_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "abtest-local",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestLocal",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


def prepare(database: str) -> str:
    """Point this process at a migrated local database and the layer, as Lambda would see them."""
    for key, value in LOCAL_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    url = database_url(database)
    os.environ["DATABASE_URL"] = url
    for folder in reversed(layer_paths()):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    from abtest.db import get_database
    from abtest.migrate import apply_migrations

    applied = get_database().run(apply_migrations, transaction=False)
    if applied:
        print(f"migrations applied: {', '.join(applied)}", flush=True)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev")
    parser.add_argument("command", choices=["serve", "migrate"])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--database", default="abtest", help="local database name (default abtest)")
    args = parser.parse_args(argv)
    prepare(args.database)
    if args.command == "serve":
        from localdev.server import serve

        serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
