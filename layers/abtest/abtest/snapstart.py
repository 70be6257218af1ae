"""Lambda SnapStart: what runs before the snapshot is taken, and after each restore.

With SnapStart a function's init runs once, when a version is published; every new execution
environment then resumes from a snapshot of that memory. Whatever init left in memory is therefore
shared by every environment restored from it, and stale by the time each one wakes up.

Before the snapshot (`before_snapshot`) each HTTP function warms what its first request would
otherwise pay for: every route is resolved once with a synthetic request (the validators and the
OpenAPI models built, the error path exercised), the report's templates compiled, numpy loaded where
ranking happens. All of it runs with the database blocked (a request that reaches it is answered 503,
no connection is opened: data read at publish would be stale at every restore), and afterwards every
metric the priming emitted is dropped, then the settings, the database object and the services with
their caches are forgotten (`wiring.reset`), so no connection, credential or cached row is in the
snapshot.

After a restore (`after_restore`) the same reset runs again (nothing from before the snapshot is
reused, even if a later change forgot it), and the `random` module is re-seeded from the operating
system so that restored environments do not share a sequence. Connections reopen lazily on the first
request, each with fresh credentials (an IAM auth token is generated per connection and never kept).
`uuid4` and `secrets` read the operating system's randomness at each call, so they need nothing.

The hooks come from `snapshot_restore_py`, which the Lambda Python runtime provides; where it is
missing (the local server, a runtime without SnapStart) `register` does nothing.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from abtest.errors import Unavailable
from abtest.observability import cloudwatch, logger
from abtest.settings import get_settings

# A syntactically valid id that names nothing: path parameters of the synthetic requests.
_NIL_ID = "00000000-0000-0000-0000-000000000000"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _hooks() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:  # not in Lambda's runtime, and the package is not installed
        return None
    return register_before_snapshot, register_after_restore


def register(app: Any, route_keys: Iterable[str]) -> bool:
    """Register the hooks for one HTTP function's resolver; False where the runtime has none."""
    hooks = _hooks()
    if hooks is None:
        return False
    before, after = hooks
    keys = tuple(route_keys)
    before(lambda: before_snapshot(app, keys))
    after(after_restore)
    return True


def synthetic_event(route_key: str) -> dict[str, Any]:
    """A minimal HTTP API v2 event for `route_key` ("POST /api/v1/x/{id}"), ids set to the nil UUID."""
    method, template = route_key.split(" ", 1)
    parameters = {
        part[1:-1]: _NIL_ID for part in template.split("/") if part.startswith("{") and part.endswith("}")
    }
    path = template
    for name, value in parameters.items():
        path = path.replace("{" + name + "}", value)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "snapstart-priming",
            "routeKey": route_key,
            "stage": "$default",
        },
        "pathParameters": parameters or None,
        "isBase64Encoded": False,
    }
    if method in _BODY_METHODS:
        event["body"] = json.dumps({})  # refused by the route's model: validation runs, nothing is written
    return event


@contextmanager
def database_blocked() -> Iterator[None]:
    """Within: any database access raises Unavailable (answered 503) without opening a connection."""
    from abtest import wiring
    from abtest.storage import database

    def refuse(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise Unavailable("no database access before the snapshot")

    wiring.reset()  # no connection open, and the next Database is built inside the block
    original = database.connection_params
    # Every Database built by get_database resolves its credentials through this module function.
    database.connection_params = refuse
    try:
        yield
    finally:
        database.connection_params = original
        wiring.reset()


def prime(app: Any, route_keys: Iterable[str]) -> int:
    """Resolve each route once with a synthetic request, the database blocked; the number resolved."""
    resolved = 0
    with database_blocked():
        for key in route_keys:
            try:
                app.resolve(synthetic_event(key), None)
                resolved += 1
            except Exception as exc:  # priming must never fail a publish; the first request will tell
                logger.warning("priming a route failed", extra={"route": key, "error": repr(exc)})
        _warm_modules()
    return resolved


def _warm_modules() -> None:
    """What the synthetic requests do not reach: the repositories (imported on first use, and a
    request refused by validation uses none), the report's templates, numpy."""
    from abtest import storage

    for module in sorted(set(storage._HOMES.values())):
        importlib.import_module(module)
    if get_settings().ingest_mode == "buffered":
        importlib.import_module("abtest.ingest.door")
        with suppress(ImportError):  # the runtime's boto3, for the queue (no client: no credentials)
            importlib.import_module("boto3")
    if "abtest.analysis.report" in sys.modules:
        from abtest.analysis import report

        environment = report._environment()
        for name in environment.list_templates():
            environment.get_template(name)
    if "abtest.domain.serving" in sys.modules:
        with suppress(ImportError):  # numpy: only AssignmentsFunction has its layer
            import abtest.domain.recommender  # noqa: F401


def before_snapshot(app: Any, route_keys: Iterable[str]) -> None:
    """The before-snapshot hook: prime, then drop everything unique to this moment."""
    resolved = prime(app, route_keys)
    cloudwatch.clear_metrics()  # the priming's 503s and validation errors are not traffic
    forget()
    logger.info("primed for the snapshot", extra={"routes": resolved})


def after_restore() -> None:
    """The after-restore hook: forget whatever the snapshot held, re-seed `random`."""
    forget()
    random.seed()  # from os.urandom: each restored environment gets its own sequence


def forget() -> None:
    """Close the connection and forget settings, database, services and their caches."""
    from abtest import wiring

    wiring.reset()
    door = sys.modules.get("abtest.ingest.door")
    if door is not None:
        door.forget()  # the known experiment ids: data, re-learnt after a restore
