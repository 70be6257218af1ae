"""Webhook secrets at rest: encrypted, never hashed (signing needs them in clear), never logged.

In AWS the secrets are encrypted with a KMS key (`WEBHOOK_KMS_KEY_ID`, created by the template) under
an encryption context that ties each ciphertext to its purpose; the key never leaves KMS. Locally (the
local server, tests) a 32-byte key file (`WEBHOOK_KEY_FILE`, created on first use with mode 0600)
seals them with the standard library only: a keystream of HMAC-SHA256 blocks over a random nonce and a
counter (HMAC as a pseudo-random function in counter mode), then an HMAC-SHA256 tag over nonce and
ciphertext (encrypt-then-MAC, with separate derived keys). The local form protects a development
database dump; production secrets go through KMS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from abtest.settings import Settings

_CONTEXT = {"purpose": "abtest-webhook-secret"}
_LOCAL_VERSION = b"L1"
_NONCE_BYTES = 16
_TAG_BYTES = 32


class SecretBoxError(Exception):
    """A secret could not be sealed or opened (no key configured, wrong key, tampered ciphertext)."""


class SecretBox(Protocol):
    def seal(self, secret: str) -> bytes: ...

    def open(self, ciphertext: bytes) -> str: ...


class KmsSecretBox:
    """Secrets encrypted by a KMS key (boto3's KMS client)."""

    def __init__(self, key_id: str, client: Any) -> None:
        self._key_id = key_id
        self._client = client

    def seal(self, secret: str) -> bytes:
        answer = self._client.encrypt(
            KeyId=self._key_id, Plaintext=secret.encode(), EncryptionContext=_CONTEXT
        )
        blob: bytes = answer["CiphertextBlob"]
        return blob

    def open(self, ciphertext: bytes) -> str:
        answer = self._client.decrypt(
            CiphertextBlob=bytes(ciphertext), KeyId=self._key_id, EncryptionContext=_CONTEXT
        )
        plain: bytes = answer["Plaintext"]
        return plain.decode()


class LocalSecretBox:
    """Secrets sealed with a local key file (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise SecretBoxError("the local webhook key must hold at least 32 bytes")
        self._enc = hmac.new(key, b"abtest webhook secret: encryption", hashlib.sha256).digest()
        self._mac = hmac.new(key, b"abtest webhook secret: authentication", hashlib.sha256).digest()

    @classmethod
    def from_file(cls, path: Path) -> LocalSecretBox:
        """The key in `path` (hex), created with 32 random bytes and mode 0600 if missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        try:
            return cls(bytes.fromhex(path.read_text().strip()))
        except ValueError as exc:
            raise SecretBoxError(f"{path} does not hold a hex key") from exc

    def _stream(self, nonce: bytes, length: int) -> bytes:
        blocks = []
        for counter in range((length + 31) // 32):
            blocks.append(hmac.new(self._enc, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest())
        return b"".join(blocks)[:length]

    def seal(self, secret: str) -> bytes:
        plain = secret.encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain)), strict=True))
        tag = hmac.new(self._mac, _LOCAL_VERSION + nonce + body, hashlib.sha256).digest()
        return _LOCAL_VERSION + nonce + body + tag

    def open(self, ciphertext: bytes) -> str:
        data = bytes(ciphertext)
        if len(data) < 2 + _NONCE_BYTES + _TAG_BYTES or not data.startswith(_LOCAL_VERSION):
            raise SecretBoxError("not a locally sealed secret")
        nonce, body, tag = (
            data[2 : 2 + _NONCE_BYTES],
            data[2 + _NONCE_BYTES : -_TAG_BYTES],
            data[-_TAG_BYTES:],
        )
        expected = hmac.new(self._mac, _LOCAL_VERSION + nonce + body, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            raise SecretBoxError("the sealed secret does not match the local key")
        return bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body)), strict=True)).decode()


def secret_box_for(settings: Settings) -> SecretBox:
    """KMS when a key id is configured, else the local key file."""
    if settings.webhook_kms_key_id:
        return _kms_box(settings.webhook_kms_key_id, settings.aws_region)
    if settings.webhook_key_file:
        return LocalSecretBox.from_file(Path(settings.webhook_key_file))
    raise SecretBoxError("no webhook key: set WEBHOOK_KMS_KEY_ID (AWS) or WEBHOOK_KEY_FILE (local)")


@lru_cache(maxsize=4)
def _kms_box(key_id: str, region: str | None) -> KmsSecretBox:
    import boto3

    return KmsSecretBox(key_id, boto3.client("kms", region_name=region))
