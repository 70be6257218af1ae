"""abtest.domain.webhook_signing: the published Standard Webhooks test vector, and our headers verified by
the `standardwebhooks` package (the Standard Webhooks project's own Python library, not ours)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from abtest.domain.webhook_signing import (
    SECRET_BYTES,
    SECRET_PREFIX,
    InvalidWebhookSecret,
    decode_secret,
    generate_secret,
    message_id,
    sign,
    signed_headers,
    verify,
)

# The vector of the Standard Webhooks repository (libraries/python/tests/test_webhooks.py,
# test_sign_function; the same values appear in the other languages' tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = b'{"type": "srm_detected", "timestamp": "2026-12-07T06:00:00Z", "data": {"experiment_id": 7}}'


def test_the_published_test_vector_signs_correctly() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)
    headers = signed_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_BODY, now=at)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=at)


def test_the_standard_webhooks_library_verifies_our_headers() -> None:
    secret = generate_secret()
    msg_id = message_id()
    headers = signed_headers(secret, msg_id, BODY)
    assert Webhook(secret).verify(BODY, headers) == {
        "type": "srm_detected",
        "timestamp": "2026-12-07T06:00:00Z",
        "data": {"experiment_id": 7},
    }
    # And it refuses them for another body, another secret or another id.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"7", b"8"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": message_id()})


def test_every_attempt_is_signed_afresh_under_the_same_id() -> None:
    secret = generate_secret()
    msg_id = message_id()
    now = datetime.now(UTC)
    first = signed_headers(secret, msg_id, BODY, now=now - timedelta(seconds=90))
    retry = signed_headers(secret, msg_id, BODY, now=now)
    assert first["webhook-id"] == retry["webhook-id"] == msg_id
    assert int(retry["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 90
    assert first["webhook-signature"] != retry["webhook-signature"]
    for headers in (first, retry):
        Webhook(secret).verify(BODY, headers)
    # A receiver rejects an attempt older than its tolerance (5 minutes): hence one signature per attempt.
    stale = signed_headers(secret, msg_id, BODY, now=now - timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale)
    assert not verify(secret, stale, BODY, now=now)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed_headers([old, new], message_id(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
        assert verify(secret, headers, BODY)
    assert not verify(generate_secret(), headers, BODY)


def test_the_secret_is_never_sent() -> None:
    secret = generate_secret()
    headers = signed_headers(secret, message_id(), BODY)
    sent = " ".join(headers.values())
    assert secret not in sent
    assert secret.removeprefix(SECRET_PREFIX) not in sent
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}


def test_generated_secrets_are_32_random_bytes_behind_the_prefix() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert len(decode_secret(secret)) == SECRET_BYTES
        assert base64.b64decode(secret.removeprefix(SECRET_PREFIX)) == decode_secret(secret)
    ids = {message_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("msg_") and "." not in i for i in ids)


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidWebhookSecret):
        decode_secret(secret)
    with pytest.raises(InvalidWebhookSecret):
        sign(secret, "msg_1", 1, BODY)


def test_signing_needs_a_timezone_aware_time_an_id_and_a_secret() -> None:
    secret = generate_secret()
    with pytest.raises(ValueError, match="timezone"):
        signed_headers(secret, "msg_1", BODY, now=datetime(2026, 12, 7))
    with pytest.raises(ValueError, match="message id"):
        sign(secret, "", 1, BODY)
    with pytest.raises(ValueError, match="at least one secret"):
        signed_headers([], "msg_1", BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "abc", "webhook-signature": "v1,x"},
        {"webhook-id": "", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
    ],
)
def test_verify_refuses_incomplete_headers(headers: dict[str, str]) -> None:
    assert not verify(generate_secret(), headers, BODY)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(
        alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=1, max_size=40
    ),
    timestamp=st.integers(min_value=0, max_value=2**35),
    body=st.binary(max_size=2000),
)
def test_signatures_equal_the_libraries_for_any_input(
    key: bytes, msg_id: str, timestamp: int, body: bytes
) -> None:
    secret = SECRET_PREFIX + base64.b64encode(key).decode()
    expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body)
    assert sign(secret, msg_id, timestamp, body) == expected
