"""A demo experiment with several days of simulated traffic and a real effect (`make demo`; `make run`
and `make seed` create it when it is missing), so the HTML report is populated at once.

Everything goes through the service's own handlers, in-process, as a client would send it: the
experiment is created and started, each simulated user is enrolled (POST /assignments, without an
exposure), exposures and conversions are posted with timestamps spread over the last DAYS days
(POST /events), all inside the experiment's dates (its start and its users' enrollment are moved back
to the first simulated day and to each user's first exposure), the rollup runs (snapshots one row per
day), and the experiment is completed so it neither enrolls anyone nor shows in the running list. The
treatment converts better (a real effect); the same seed always gives the same data.
"""

from __future__ import annotations

import contextlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np

from localdev.lambda_events import LocalLambdaContext, http_api_event
from localdev.template import Route, http_routes, match

DEMO_NAME = "demo_checkout_redesign"
DAYS = 8
USERS_PER_DAY = 200
PURCHASE_RATE = {"control": 0.10, "treatment": 0.17}
RETURN_RATE = {"control": 0.35, "treatment": 0.36}


@cache
def _routes() -> list[Route]:
    return http_routes()


def _call(method: str, path: str, body: Any = None, query: str = "") -> Any:
    """Invoke the handler that serves this route, as API Gateway would, and return the JSON body."""
    found = match(_routes(), method, path)
    assert found is not None, f"no route {method} {path}"
    route, params = found
    event = http_api_event(
        method,
        path,
        route_key=route.route_key,
        path_parameters=params,
        query=query,
        headers={"content-type": "application/json"},
        body=None if body is None else json.dumps(body),
        # What the JWT authorizer adds for a token with every scope (whatever AUTH_MODE says).
        authorizer={"jwt": {"claims": {"sub": "localdev-demo"}, "scopes": ["admin", "read", "ingest"]}},
    )
    result = route.load()(event, LocalLambdaContext(function_name=route.function))
    if result["statusCode"] >= 400:
        raise RuntimeError(f"{method} {path}: {result['statusCode']} {result.get('body')}")
    return json.loads(result["body"]) if result.get("body") else None


def demo_experiment_id() -> str | None:
    """The demo experiment's id, or None if it does not exist."""
    page = _call("GET", "/api/v1/experiments", query=f"status=all&name={DEMO_NAME}")
    return str(page["experiments"][0]["id"]) if page["experiments"] else None


def create_demo(now: datetime | None = None, seed: int = 13) -> tuple[str, bool]:
    """Create the demo experiment unless it exists; returns (id, created now)."""
    # The handlers print one EMF metrics line per call: not for the terminal of `make run`. Redirected
    # once, here: redirect_stdout swaps a process-wide sys.stdout, which threads must not each do.
    with contextlib.redirect_stdout(io.StringIO()):
        return _create_demo(now, seed)


def _create_demo(now: datetime | None, seed: int) -> tuple[str, bool]:
    existing = demo_experiment_id()
    if existing is not None:
        return existing, False
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    experiment = _call(
        "POST",
        "/api/v1/experiments",
        {
            "name": DEMO_NAME,
            "description": "Demo: a redesigned checkout page against the current one (simulated traffic)",
            "surface": "checkout",
            "salt": "demo-checkout-redesign-2026",
            "variants": [
                {"name": "control", "weight": 0.5, "config": {"layout": "current"}},
                {"name": "treatment", "weight": 0.5, "config": {"layout": "one-page"}},
            ],
        },
    )
    experiment_id = experiment["id"]
    _call("PUT", f"/api/v1/experiments/{experiment_id}/status", {"status": "running"})
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = midnight - timedelta(days=DAYS - 1)
    latest = now - timedelta(minutes=1)
    events: list[dict[str, Any]] = []
    users = [(day, f"demo-{day}-{n}") for day in range(DAYS) for n in range(USERS_PER_DAY)]

    def enroll(user: str) -> str:
        body = {"user_id": user, "experiment_id": experiment_id, "record_exposure": False}
        variant: str = _call("POST", "/api/v1/assignments", body)["variant"]["name"]
        return variant

    # A few threads (each with its own connection, like warm Lambda containers) cut the start-up wait.
    with ThreadPoolExecutor(max_workers=4) as pool:
        variants = list(pool.map(enroll, [user for _, user in users]))
    first_seen: dict[str, datetime] = {}
    for (day, user), variant in zip(users, variants, strict=True):
        start = first_day + timedelta(days=day)
        seen = min(start + timedelta(seconds=float(rng.uniform(0, 86_400))), latest)
        first_seen[user] = seen
        events.append(_event("exposure", experiment_id, user, seen))
        for metric, rates in (("purchase", PURCHASE_RATE), ("return_visit", RETURN_RATE)):
            if rng.random() < rates[variant]:
                at = min(seen + timedelta(hours=float(rng.exponential(20))), latest)
                value = round(float(rng.gamma(4.0, 12.0)), 2) if metric == "purchase" else 1.0
                events.append(_event("conversion", experiment_id, user, at, metric, value))
    # The simulated days happened while the experiment ran: it started on the first of them and each
    # user was enrolled when first seen (the API stamps both with the time of the call, today).
    _backdate(experiment_id, first_day, first_seen)
    # Oldest first, as live traffic arrives: a rollup that runs between two batches (or stops below
    # another session's open transaction) then never sees an event dated before one it already folded.
    events.sort(key=lambda event: str(event["timestamp"]))
    for first in range(0, len(events), 1000):
        _call("POST", "/api/v1/events", {"events": events[first : first + 1000]})
    from abtest.storage import RollupRepository
    from abtest.storage.database import get_database

    RollupRepository(get_database()).roll_up()
    _call("PUT", f"/api/v1/experiments/{experiment_id}/status", {"status": "completed"})
    return experiment_id, True


def _backdate(experiment_id: str, started_at: datetime, enrolled_at: dict[str, datetime]) -> None:
    """Move the demo's start and its users' enrollment back to the simulated days (no route does this:
    a real experiment starts when it is started)."""
    from abtest.storage.database import Connection, get_database

    def work(conn: Connection) -> None:
        conn.execute(
            "UPDATE experiments SET started_at = %s, created_at = least(created_at, %s) WHERE id = %s",
            (started_at, started_at, experiment_id),
        )
        conn.execute(
            "UPDATE assignments SET assigned_at = t.at"
            " FROM unnest(%s::text[], %s::timestamptz[]) AS t(user_id, at)"
            " WHERE assignments.experiment_id = %s AND assignments.user_id = t.user_id",
            (list(enrolled_at), list(enrolled_at.values()), experiment_id),
        )

    get_database().run(work)


def _event(
    kind: str, experiment_id: str, user: str, at: datetime, metric: str | None = None, value: float = 1.0
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "experiment_id": experiment_id,
        "user_id": user,
        "event_id": f"{kind}-{metric or 'seen'}-{user}",
        "timestamp": at.isoformat(),
    }
    if metric is not None:
        event.update(metric_name=metric, value=value)
    return event
