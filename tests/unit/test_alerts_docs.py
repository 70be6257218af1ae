"""docs/alerts.md's Python examples, executed: the sequential SRM walk-through, both receiver snippets
(checked against our signed headers and the published Standard Webhooks vector), and the quoted error."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from abtest.domain.webhook_signing import generate_secret, message_id, signed_headers
from abtest.domain.webhook_urls import UnsafeWebhookUrl, check_webhook_url

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE, re.DOTALL)
BODY = b'{"type": "srm_detected", "timestamp": "2026-12-07T06:00:00Z", "data": {"experiment_id": 7}}'


def _run(marker: str) -> dict[str, Any]:
    [block] = [block for block in BLOCKS if marker in block]
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/alerts.md", "exec"), namespace)  # the page's own example, as written
    return namespace


def test_every_python_block_of_the_page_is_exercised_here() -> None:
    assert len(BLOCKS) == 3


def test_the_sequential_srm_walk_through_runs() -> None:
    # Its asserts are part of the example.
    assert "state" in _run("SequentialSrm.start")


def test_the_library_receiver_accepts_our_delivery_and_refuses_a_tampered_one() -> None:
    handle_delivery = _run("def handle_delivery")["handle_delivery"]
    secret = generate_secret()
    headers = signed_headers(secret, message_id(), BODY)
    assert handle_delivery(secret, headers, BODY)["data"] == {"experiment_id": 7}
    with pytest.raises(WebhookVerificationError):
        handle_delivery(secret, headers, BODY + b" ")


def test_the_standard_library_receiver_agrees() -> None:
    verify_delivery = _run("def verify_delivery")["verify_delivery"]
    secret = generate_secret()
    now = datetime.now(UTC)
    headers = signed_headers(secret, message_id(), BODY, now=now)
    assert verify_delivery(secret, headers, BODY)
    assert not verify_delivery(secret, headers, BODY.replace(b"7", b"8"))
    assert not verify_delivery(generate_secret(), headers, BODY)
    assert not verify_delivery(
        secret, signed_headers(secret, message_id(), BODY, now=now - timedelta(minutes=6)), BODY
    )
    assert verify_delivery(secret, signed_headers([generate_secret(), secret], message_id(), BODY), BODY)
    # The published Standard Webhooks vector, with the tolerance opened to reach back to 2021.
    vector = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert verify_delivery(secret, vector, b'{"test": 2432232314}', tolerance=10**10)
    assert not verify_delivery(secret, vector, b'{"test": 2432232315}', tolerance=10**10)


def test_the_quoted_error_message_is_the_real_one() -> None:
    with pytest.raises(UnsafeWebhookUrl) as caught:
        check_webhook_url(
            "https://169.254.169.254/latest/meta-data/", local_mode=False, resolve=lambda h, p: []
        )
    assert f"`{caught.value.message}`" in PAGE
