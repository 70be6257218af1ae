"""Issue 23's acceptance through the local server (its timers on, as `make run` runs them) with a webhook
receiver on 127.0.0.1: a skewed split raises exactly one `srm_detected` delivery whose signature the
`standardwebhooks` package (a library nobody here wrote) verifies; a receiver that fails twice then
succeeds gets the same `webhook-id` three times and the delivery log shows three attempts; a private or
metadata address is refused with a 422 naming `url`; no answer ever shows the secret again."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook as StandardWebhook

from abtest.contract.bucketing import bucket_for
from tests.e2e.conftest import Http, start_server
from tests.e2e.test_hardening import BASE, send, start
from tests.webhook_receiver import Receiver

FAST_TICKS = {
    "LOCAL_TICKS": "on",
    "LOCAL_ROLLUP_SECONDS": "1",
    "LOCAL_DELIVERY_SECONDS": "0.3",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_RETRY_CAP_SECONDS": "1",
}


@pytest.fixture
def ticking(clean_db: str) -> Iterator[Http]:
    with start_server(clean_db, env=FAST_TICKS) as http:
        yield http


def wait_for(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def subscribe(http: Http, url: str, **extra: Any) -> dict[str, Any]:
    status, created, _ = send(http, "POST", "/api/v1/webhooks", {"url": url, **extra})
    assert status == 201, created
    assert created["secret"].startswith("whsec_")
    return dict(created)


def test_a_skewed_split_sends_exactly_one_srm_detected_that_verifies(
    ticking: Http, receiver: Receiver
) -> None:
    hook = subscribe(ticking, receiver.url, kinds=["srm_detected"])
    experiment = start(ticking, "skewed_split")
    eid = experiment["id"]
    # Every control user is exposed, one treatment user in ten: about 600 against 60.
    weights = [v["weight"] for v in experiment["variants"]]
    for index in range(1200):
        user = f"user-{index}"
        variant = bucket_for(user, experiment["salt"], weights, 1.0)
        if variant == 0 or index % 10 == 0:
            status, body, _ = send(
                ticking, "POST", "/api/v1/assignments", {"experiment_id": eid, "user_id": user}
            )
            assert status == 200, body
            assert body["variant"]["name"] == ["control", "treatment"][variant or 0], body

    wait_for(lambda: len(receiver.requests) >= 1)
    time.sleep(4)  # several more rollup ticks and delivery sweeps: still exactly one delivery
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    event = StandardWebhook(hook["secret"]).verify(body, headers)  # raises on a bad signature
    assert headers["webhook-id"].startswith("msg_")
    assert "whsec_" not in json.dumps(headers)
    assert hook["secret"] not in body.decode()
    assert event["type"] == "srm_detected"
    assert event["data"]["experiment_id"] == eid
    assert event["data"]["evidence"]["sequential_p"] < 0.001

    status, alerts, _ = send(ticking, "GET", f"/api/v1/alerts?experiment_id={eid}&kind=srm_detected")
    assert status == 200
    assert [a["id"] for a in alerts["alerts"]] == [event["data"]["id"]]
    status, history, _ = send(ticking, "GET", f"{BASE}/{eid}/history")
    assert "alert.srm_detected" in [entry["action"] for entry in history["events"]]
    status, results, _ = send(ticking, "GET", f"{BASE}/{eid}/results")
    assert results["srm"]["sequential_flag"] is True
    # Monotone: at most what it was when the alert fired (later checks may have lowered it).
    assert results["srm"]["sequential_p_value"] <= event["data"]["evidence"]["sequential_p"]
    status, log, _ = send(ticking, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries")
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in log["deliveries"]] == [(1, True, 204)]


def test_a_receiver_failing_twice_gets_the_same_id_three_times(ticking: Http, receiver: Receiver) -> None:
    receiver.fail_first = 2
    hook = subscribe(ticking, receiver.url)
    status, queued, _ = send(ticking, "POST", f"/api/v1/webhooks/{hook['id']}/test")
    assert status == 202, queued

    wait_for(lambda: len(receiver.requests) >= 3)
    time.sleep(1.5)
    assert len(receiver.requests) == 3  # the third succeeded: no fourth
    assert {headers["webhook-id"] for headers, _ in receiver.requests} == {queued["message_id"]}
    assert len({body for _, body in receiver.requests}) == 1  # the same message ...
    for headers, body in receiver.requests:  # ... each attempt signed afresh, and valid
        assert StandardWebhook(hook["secret"]).verify(body, headers)["type"] == "test"
    status, log, _ = send(ticking, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries")
    attempts = [(d["message_id"], d["attempt"], d["ok"], d["status_code"]) for d in log["deliveries"]]
    msg = queued["message_id"]
    assert attempts == [(msg, 3, True, 204), (msg, 2, False, 500), (msg, 1, False, 500)]


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:192.168.1.1]/",
        "http://example.com/hook",
    ],
)
def test_a_private_or_metadata_url_is_refused_naming_url(http: Http, url: str) -> None:
    status, refused, _ = send(http, "POST", "/api/v1/webhooks", {"url": url})
    assert (status, refused["error"], refused["field"]) == (422, "invalid_webhook_url", "url"), refused


def test_the_secret_is_shown_once(http: Http) -> None:
    hook = subscribe(http, "http://127.0.0.1:9/hook")
    for path in (
        "/api/v1/webhooks",
        f"/api/v1/webhooks/{hook['id']}",
        f"/api/v1/audit?entity_id={hook['id']}",
    ):
        status, answer, _ = send(http, "GET", path)
        assert status == 200, answer
        assert hook["secret"] not in json.dumps(answer)
        assert "secret_ciphertext" not in json.dumps(answer)
    status, rotated, _ = send(http, "PATCH", f"/api/v1/webhooks/{hook['id']}", {"rotate_secret": True})
    assert status == 200, rotated
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != hook["secret"]
    status, answer, _ = send(http, "GET", f"/api/v1/audit?entity_id={hook['id']}")
    assert rotated["secret"] not in json.dumps(answer)
