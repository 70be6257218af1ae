"""SnapStart hooks (abtest.snapstart), run in order against the real database: prime, snapshot,
restore, first request. Nothing unique may survive into the snapshot: no connection (open or
closed, a closed one still holds its password), no credential with an expiry (an IAM auth token is
minted per connection here, as in AWS), no random state shared by two restores, no cached data."""

from __future__ import annotations

import gc
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import snapshot_restore_py

from abtest import snapstart, wiring
from abtest.storage import database
from tests.integration.conftest import ROUTES, ApiResponse, call


def _live_connections() -> list[psycopg.Connection[Any]]:
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, psycopg.Connection)]


def _holders(token: str, ignore: list[Any]) -> list[Any]:
    """gc-tracked containers (other than `ignore`) that hold `token`."""
    gc.collect()
    ignored = {id(obj) for obj in ignore}
    found = []
    for obj in gc.get_objects():
        if id(obj) in ignored:
            continue
        values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list | tuple) else ()
        # Strings only (unittest.mock.ANY equals anything).
        if any(type(value) is str and value == token for value in values):
            found.append(obj)
    return found


@pytest.fixture
def iam_tokens(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every connection authenticates with a freshly minted token (as with DB_IAM_AUTH in AWS; the
    local server accepts any password), recorded here."""
    minted: list[str] = []

    def params(settings: Any, boto_session: Any = None) -> dict[str, Any]:
        token = f"iam-token-{uuid.uuid4()}"  # stands for rds generate_db_auth_token's signed URL
        minted.append(token)
        return {"conninfo": clean_db, "password": token, "connect_timeout": 5}

    wiring.reset()
    monkeypatch.setattr(database, "connection_params", params)
    yield minted
    wiring.reset()


def _handler(function: str) -> Any:
    import sys

    route = next(r for r in ROUTES if r.function == function)
    route.load()
    module = sys.modules[route.handler.split(".")[0]]
    return module


def test_hooks_leave_no_connection_token_or_random_state(iam_tokens: list[str]) -> None:
    # A warm environment before publishing: a request has connected and filled the caches.
    created = call(
        "POST",
        "/api/v1/experiments",
        {"name": "snap", "variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]},
    )
    assert created.status == 201, created
    assert call("GET", "/api/v1/experiments").status == 200
    assert call("POST", "/api/v1/recommendations", {"user_id": "u1"}).status == 200
    assert iam_tokens
    assert _live_connections()

    # The before-snapshot hook of each HTTP function, as the runtime runs it.
    module = _handler("AssignmentsFunction")
    tokens_before = len(iam_tokens)
    snapstart.before_snapshot(module.app, module.ROUTE_SCOPES)
    assert len(iam_tokens) == tokens_before, "priming must not reach the database"
    assert _live_connections() == [], "a connection (and its password) would be in the snapshot"
    assert database.get_database.cache_info().currsize == 0
    assert wiring.assignment_service.cache_info().currsize == 0, "cached rows would be stale at restore"
    for token in iam_tokens:
        assert _holders(token, [iam_tokens]) == [], "a credential would be in the snapshot"

    # Two environments restored from the same snapshot must not share a random sequence.
    snapshot_state = random.getstate()
    draws = []
    for _ in range(2):
        random.setstate(snapshot_state)
        snapstart.after_restore()
        draws.append([random.random() for _ in range(4)])
    assert draws[0] != draws[1]

    # The first request after the restore connects lazily, with a new token.
    first = call("POST", "/api/v1/assignments", {"experiment_id": created.json["id"], "user_id": "u2"})
    assert first.status in (200, 404), first  # a draft experiment: not running, but answered
    assert len(iam_tokens) == tokens_before + 1


def test_priming_resolves_every_route_without_the_database(iam_tokens: list[str]) -> None:
    for function in ("ExperimentsFunction", "AssignmentsFunction", "EventsFunction", "MetricsFunction"):
        module = _handler(function)
        assert snapstart.prime(module.app, module.ROUTE_SCOPES) == len(module.ROUTE_SCOPES)
    assert iam_tokens == []
    assert _live_connections() == []


def test_the_runtime_hooks_run_in_registration_order(
    iam_tokens: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """register() puts both hooks in snapshot_restore_py's registries, which the runtime runs."""
    before: list[tuple[Callable[..., Any], Any, Any]] = []
    after: list[tuple[Callable[..., Any], Any, Any]] = []
    monkeypatch.setattr(snapshot_restore_py, "_before_snapshot_registry", before)
    monkeypatch.setattr(snapshot_restore_py, "_after_restore_registry", after)
    module = _handler("EventsFunction")
    assert snapstart.register(module.app, module.ROUTE_SCOPES)
    assert call("GET", "/api/v1/experiments").status == 200
    assert _live_connections()
    for hook, args, kwargs in before:
        hook(*args, **kwargs)
    assert _live_connections() == []
    for hook, args, kwargs in after:
        hook(*args, **kwargs)
    assert call("GET", "/api/v1/experiments").status == 200


def test_unavailable_answer_during_priming_is_a_503(iam_tokens: list[str]) -> None:
    with snapstart.database_blocked():
        answer: ApiResponse = call("GET", "/api/v1/experiments")
    assert answer.status == 503
    assert answer.headers.get("Retry-After")
    assert iam_tokens == []
