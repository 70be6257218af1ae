"""Every file in events/ works on a freshly seeded database, through `python -m localdev invoke`.

The same commands docs/development.md gives (`make seed`, then `make invoke FUNCTION=... EVENT=...`), run as
subprocesses against the test database, in the order a newcomer would try them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from localdev.postgres import PROJECT_ROOT
from localdev.seed import DEMO_EXPERIMENT_ID
from localdev.template import http_routes, load_template

EVENTS = PROJECT_ROOT / "events"

# Each file and the status its handler answers on a freshly seeded database, in this order.
EXPECTED = {
    "list_experiments.json": 200,
    "get_experiment.json": 200,
    "start_experiment.json": 200,
    "create_experiment.json": 201,
    "rollup_schedule.json": None,  # not an HTTP event: the rollup answers its run summary
}


def localdev(database_url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", "localdev", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def printed_result(stdout: str) -> Any:
    """The handler's result: the last JSON value printed (Powertools logs go to stdout before it)."""
    decoder, position, last = json.JSONDecoder(), 0, None
    while (position := _skip_space(stdout, position)) < len(stdout):
        last, position = decoder.raw_decode(stdout, position)
    return last


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def function_for(event: dict[str, Any]) -> str:
    """The template's function for an event: by route key for HTTP events, else the scheduled one."""
    if "routeKey" in event:
        (route,) = [route for route in http_routes() if route.route_key == event["routeKey"]]
        return route.function
    # Several functions run on schedules (the rollup, the alerts' delivery sweep): the event's rule
    # names its function, as EventBridge's rule ARN does (".../rule/<stack>-<Function><Event>").
    rule = str(event.get("resources", [""])[0]).rpartition("/")[2]
    (scheduled,) = [
        name
        for name, resource in load_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(
            e["Type"] == "Schedule" and rule.endswith(name + event_name)
            for event_name, e in resource["Properties"].get("Events", {}).items()
        )
    ]
    return scheduled


def test_every_event_file_has_an_expected_answer() -> None:
    assert sorted(path.name for path in EVENTS.glob("*.json")) == sorted(EXPECTED)


def test_event_files_work_after_make_seed(clean_db: str) -> None:
    seeded = localdev(clean_db, "seed")
    assert str(DEMO_EXPERIMENT_ID) in seeded

    answers: dict[str, Any] = {}
    for name, status in EXPECTED.items():
        path = EVENTS / name
        event = json.loads(path.read_text(encoding="utf-8"))
        answer = printed_result(localdev(clean_db, "invoke", function_for(event), str(path)))
        answers[name] = answer
        if status is None:
            assert {"horizon", "srm_detected"} <= set(answer), answer
        else:
            assert answer["statusCode"] == status, (name, answer)

    body = json.loads(answers["get_experiment.json"]["body"])
    assert (body["id"], body["status"]) == (str(DEMO_EXPERIMENT_ID), "draft")
    assert json.loads(answers["start_experiment.json"]["body"])["status"] == "running"
    # Seeding again keeps the demo experiment (now running) and the files still answer the same.
    localdev(clean_db, "seed")
    again = json.loads(
        localdev(clean_db, "invoke", "ExperimentsFunction", str(EVENTS / "start_experiment.json"))
    )
    assert again["statusCode"] == 200


def test_the_seed_reuses_the_id_the_events_name() -> None:
    for name in ("get_experiment.json", "start_experiment.json"):
        event = json.loads(Path(EVENTS / name).read_text(encoding="utf-8"))
        assert event["pathParameters"]["experiment_id"] == str(DEMO_EXPERIMENT_ID)
