"""The local server's timer: what EventBridge schedules and SQS drive in AWS, run in-process.

Every `LOCAL_ROLLUP_SECONDS` (default 5) the RollupFunction's handler runs (the rollup, then the alerts:
sequential SRM, transitions, digests, the outbox relay), and every `LOCAL_DELIVERY_SECONDS` (default 1)
the DeliveryFunction's handler runs its sweep with `"deliver": true`, which attempts the due webhook
messages at once instead of handing them to a queue. Set `LOCAL_TICKS=off` to run neither (the e2e
tests' shared server does; the alert tests start their own with ticks).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from localdev.lambda_events import LocalLambdaContext
from localdev.postgres import PROJECT_ROOT
from localdev.template import Route, load_template


def _handler(function: str) -> Callable[[dict[str, Any], Any], Any]:
    properties = load_template()["Resources"][function]["Properties"]
    route = Route("", "", function, (PROJECT_ROOT / properties["CodeUri"]).resolve(), properties["Handler"])
    return route.load()


def _every(seconds: float, function: str, event: dict[str, Any], stop: threading.Event) -> None:
    handler = _handler(function)
    while not stop.wait(seconds):
        try:
            handler(event, LocalLambdaContext(function_name=function))
        except Exception:
            traceback.print_exc(file=sys.stderr)


def start_ticks() -> threading.Event | None:
    """Start the timers unless LOCAL_TICKS=off; returns the event that stops them."""
    if os.environ.get("LOCAL_TICKS", "on").lower() in ("off", "0", "false", "no"):
        return None
    stop = threading.Event()
    rollup = float(os.environ.get("LOCAL_ROLLUP_SECONDS", "5"))
    delivery = float(os.environ.get("LOCAL_DELIVERY_SECONDS", "1"))
    for seconds, function, event in (
        (rollup, "RollupFunction", {"source": "abtest.local", "time": None}),
        (delivery, "DeliveryFunction", {"source": "abtest.local", "deliver": True}),
    ):
        threading.Thread(
            target=_every, args=(seconds, function, event, stop), name=f"tick-{function}", daemon=True
        ).start()
    time.sleep(0)  # let them start
    return stop
