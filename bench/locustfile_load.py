"""The load benchmark's traffic (bench/bench_load.py runs it with locust; not a standalone test).

A realistic mix against one running experiment: assignments for new and returning users,
recommendations, single conversions, batches of 20 events, and reads of the results. The driver
passes the experiment and the returning users through the environment. A 503 with Retry-After is
counted apart ("shed"): the service refusing load is a measured outcome, not an error.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Any

from locust import HttpUser, constant, task

EXPERIMENT = os.environ["LOAD_EXPERIMENT_ID"]
RETURNING = int(os.environ.get("LOAD_RETURNING_USERS", "2000"))
HEADERS = {"Content-Type": "application/json"}


def _returning() -> str:
    return f"ret-{random.randrange(RETURNING)}"


class Client(HttpUser):
    wait_time = constant(0)  # closed loop: each user sends its next request when answered

    def _post(self, name: str, path: str, body: Any) -> None:
        self._check(name, self.client.post, path, data=json.dumps(body), headers=HEADERS)

    def _check(self, name: str, send: Any, path: str, **kwargs: Any) -> None:
        with send(path, name=name, catch_response=True, **kwargs) as response:
            if response.status_code in (200, 201, 202):
                response.success()
            elif response.status_code == 503 and response.headers.get("Retry-After"):
                response.failure("503 shed (Retry-After)")
            else:
                response.failure(f"{response.status_code} {response.text[:80]}")

    @task(8)
    def assign_new(self) -> None:
        body = {"experiment_id": EXPERIMENT, "user_id": f"new-{uuid.uuid4().hex}"}
        self._post("assign new", "/api/v1/assignments", body)

    @task(12)
    def assign_returning(self) -> None:
        self._post(
            "assign returning", "/api/v1/assignments", {"experiment_id": EXPERIMENT, "user_id": _returning()}
        )

    @task(8)
    def recommend(self) -> None:
        user = _returning() if random.random() < 0.6 else f"new-{uuid.uuid4().hex}"
        self._post("recommendations", "/api/v1/recommendations", {"user_id": user, "limit": 10})

    @task(6)
    def convert(self) -> None:
        body = {
            "experiment_id": EXPERIMENT,
            "user_id": _returning(),
            "metric_name": "purchase",
            "value": round(random.uniform(1, 50), 2),
            "event_id": uuid.uuid4().hex,
        }
        self._post("conversion", "/api/v1/experiments/conversions", body)

    @task(2)
    def batch(self) -> None:
        events: list[dict[str, Any]] = []
        for _ in range(10):
            user = _returning()
            events.append(
                {
                    "type": "exposure",
                    "experiment_id": EXPERIMENT,
                    "user_id": user,
                    "event_id": uuid.uuid4().hex,
                }
            )
            events.append(
                {
                    "type": "conversion",
                    "experiment_id": EXPERIMENT,
                    "user_id": user,
                    "event_id": uuid.uuid4().hex,
                    "metric_name": "click",
                }
            )
        self._post("batch of 20", "/api/v1/events", {"events": events})

    @task(1)
    def results(self) -> None:
        self._check("results", self.client.get, f"/api/v1/experiments/{EXPERIMENT}/results")
