"""Signing webhook deliveries the Standard Webhooks way (standardwebhooks.com, symmetric scheme `v1`).

A subscription's secret is `whsec_` + base64 of 32 random bytes; the key is the decoded bytes. Every
delivery attempt carries three headers: `webhook-id` (the message id, the same on every retry of one
message, so receivers can deduplicate), `webhook-timestamp` (Unix seconds of THIS attempt, so receivers
can reject replays) and `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")).
The secret itself is never sent. During a rotation the header may carry several space-separated
signatures, one per secret, and a receiver accepts the message if any of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "SECRET_BYTES",
    "SECRET_PREFIX",
    "InvalidWebhookSecret",
    "decode_secret",
    "generate_secret",
    "message_id",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)
# 256 bits: the HMAC-SHA256 key size; Standard Webhooks asks for 24 to 64 bytes.
SECRET_BYTES = 32
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64
# Receivers reject timestamps outside this window (the Standard Webhooks libraries' default).
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidWebhookSecret(ValueError):
    """A secret that is not `whsec_` + base64 of 24 to 64 bytes."""


def generate_secret() -> str:
    """A new random secret, `whsec_` + base64 of 32 bytes from the operating system's CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret; raises InvalidWebhookSecret for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhookSecret("a webhook secret is base64 after its prefix") from None
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise InvalidWebhookSecret(
            f"a webhook secret holds {_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


def message_id() -> str:
    """A new message id (`msg_` + 22 url-safe random characters): one per message, kept across retries."""
    return "msg_" + secrets.token_urlsafe(16)


def _timestamp(at: datetime | int) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("the signing time must be timezone-aware")
        return int(at.timestamp())
    return at


def sign(secret: str, msg_id: str, timestamp: datetime | int, body: bytes) -> str:
    """The `v1,<base64>` signature of `body` (the exact bytes sent) for this id and timestamp."""
    if not msg_id:
        raise ValueError("a message id is needed to sign")
    signed = f"{msg_id}.{_timestamp(timestamp)}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secrets_in_use: str | Sequence[str], msg_id: str, body: bytes, *, now: datetime | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ONE delivery attempt, signed at `now` (default: the clock).

    Call it afresh for every attempt (retries keep `msg_id` and get a new timestamp and signature).
    With several secrets (a rotation's old and new one), every one signs and the header lists them all.
    """
    at = _timestamp(now if now is not None else datetime.now(UTC))
    keys = [secrets_in_use] if isinstance(secrets_in_use, str) else list(secrets_in_use)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": " ".join(sign(key, msg_id, at, body) for key in keys),
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when the headers carry a valid `v1` signature of `body` made within the tolerance.

    What a receiver does; here for tests and for the docs' example of a receiver.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not msg_id or not (stamp.isascii() and stamp.isdigit()):
        return False
    current = int((now if now is not None else datetime.now(UTC)).timestamp())
    if abs(current - int(stamp)) > tolerance_seconds:
        return False
    try:
        expected = sign(secret, msg_id, int(stamp), body)
    except ValueError:
        return False
    offered = lowered.get("webhook-signature", "").split(" ")
    return any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered)
