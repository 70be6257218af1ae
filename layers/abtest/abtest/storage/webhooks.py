"""Webhook subscriptions, their messages and the delivery log.

A message is what one subscription receives for one alert (or digest, or test): its id is the
`webhook-id` of every attempt. Relaying an alert twice finds the message already there (UNIQUE
(webhook_id, alert_id)), so a subscription never gets one alert under two ids. A delivery first
*claims* a due message (moves its next attempt one lease ahead, committed), then sends, then records
the attempt: a delivery killed between sending and recording leaves the message pending, and once the
lease runs out the sweep sends it again, same id, so nothing is lost (the receiver deduplicates on the id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb

from abtest.domain.alerts import Alert, Delivery, DigestSchedule, Webhook, WebhookCreate, message_body
from abtest.domain.audit import SYSTEM_ACTOR, Actor, AuditEntry, snapshot
from abtest.domain.webhook_signing import message_id
from abtest.errors import Conflict, ErrorCode, NotFound
from abtest.limits import MAX_DELIVERY_ERROR_LENGTH, MAX_WEBHOOKS
from abtest.storage.audit import record
from abtest.storage.database import Connection, Database

_COLUMNS = (
    "id, url, kinds, digest, description, enabled, disabled_reason, consecutive_failures, created_at,"
    " updated_at"
)


# How long a rotated-out secret still signs beside the new one (docs/api/alerts.md).
ROTATION_GRACE_SECONDS = 24 * 3600


def webhook_not_found(webhook_id: UUID) -> NotFound:
    return NotFound(f"no webhook with id {webhook_id}", code=ErrorCode.WEBHOOK_NOT_FOUND, field="id")


def _webhook(row: dict[str, Any]) -> Webhook:
    return Webhook.model_validate(row)


def _snapshot(webhook: Webhook) -> dict[str, Any]:
    """A subscription as its audit entries store it: never the secret (the model has none)."""
    return snapshot(webhook, exclude={"consecutive_failures"})


@dataclass(frozen=True)
class ClaimedMessage:
    """A message claimed for one attempt, with what the attempt needs."""

    id: str
    webhook_id: UUID
    url: str
    type: str
    body: str
    attempt: int
    secret_ciphertext: bytes
    previous_secret_ciphertext: bytes | None = None
    """The secret before a rotation, while it still signs beside the new one."""


@dataclass(frozen=True)
class AttemptOutcome:
    """What recording an attempt decided."""

    delivered: bool
    gave_up: bool
    retry_at: datetime | None
    disabled: bool


class WebhookRepository:
    """Subscriptions (admin writes, each audited), messages and attempts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- Subscriptions -------------------------------------------------------------------------------

    def create(
        self, body: WebhookCreate, sealed_secret: bytes, *, actor: Actor, last_digest_at: datetime | None
    ) -> Webhook:
        def work(conn: Connection) -> Webhook:
            conn.execute("LOCK TABLE webhooks IN SHARE ROW EXCLUSIVE MODE")  # the count below holds
            row = conn.execute("SELECT count(*)::int AS n FROM webhooks").fetchone()
            if row is not None and row["n"] >= MAX_WEBHOOKS:
                raise Conflict(
                    f"at most {MAX_WEBHOOKS} webhook subscriptions", code=ErrorCode.TOO_MANY_WEBHOOKS
                )
            created = conn.execute(
                "INSERT INTO webhooks (id, url, kinds, digest, description, secret_ciphertext,"
                f" last_digest_at)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}".encode(),
                (
                    uuid4(),
                    body.url,
                    [k.value for k in body.kinds],
                    None if body.digest is None else Jsonb(body.digest.model_dump()),
                    body.description,
                    sealed_secret,
                    last_digest_at,
                ),
            ).fetchone()
            assert created is not None
            webhook = _webhook(created)
            record(
                conn,
                AuditEntry(
                    actor=actor,
                    action="webhook.create",
                    entity_type="webhook",
                    entity_id=str(webhook.id),
                    after=_snapshot(webhook),
                ),
            )
            return webhook

        return self._db.run(work)

    def get(self, webhook_id: UUID) -> Webhook:
        row = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM webhooks WHERE id = %s".encode(), (webhook_id,)
            ).fetchone(),
            transaction=False,
        )
        if row is None:
            raise webhook_not_found(webhook_id)
        return _webhook(row)

    def all(self) -> list[Webhook]:
        """Every subscription, oldest first (at most MAX_WEBHOOKS)."""
        rows = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM webhooks ORDER BY created_at, id LIMIT %s".encode(), (MAX_WEBHOOKS,)
            ).fetchall(),
            transaction=False,
        )
        return [_webhook(r) for r in rows]

    def update(
        self,
        webhook_id: UUID,
        changes: dict[str, Any],
        *,
        sealed_secret: bytes | None,
        actor: Actor,
        last_digest_at: datetime | None = None,
    ) -> Webhook:
        """Apply `changes` (url, kinds, digest, description, enabled); a new sealed secret replaces the
        old one (the entry says `secret_rotated`, never the secret)."""

        def work(conn: Connection) -> Webhook:
            before_row = conn.execute(
                f"SELECT {_COLUMNS} FROM webhooks WHERE id = %s FOR UPDATE".encode(), (webhook_id,)
            ).fetchone()
            if before_row is None:
                raise webhook_not_found(webhook_id)
            before = _webhook(before_row)
            sets, params = ["updated_at = now()"], []
            for column in ("url", "description"):
                if column in changes:
                    sets.append(f"{column} = %s")
                    params.append(changes[column])
            if "kinds" in changes:
                sets.append("kinds = %s")
                params.append([k.value for k in changes["kinds"]])
            if "digest" in changes:
                digest: DigestSchedule | None = changes["digest"]
                sets.append("digest = %s")
                params.append(None if digest is None else Jsonb(digest.model_dump()))
                sets.append("last_digest_at = %s")
                params.append(last_digest_at)
            if "enabled" in changes:
                sets.append("enabled = %s")
                params.append(changes["enabled"])
                if changes["enabled"]:
                    sets.append("disabled_reason = NULL, consecutive_failures = 0")
                else:
                    sets.append("disabled_reason = 'disabled by an administrator'")
            if sealed_secret is not None:
                # The old secret keeps signing beside the new one for the grace period.
                sets.append(
                    "previous_secret_ciphertext = secret_ciphertext,"
                    " previous_secret_until = now() + make_interval(secs => %s), secret_ciphertext = %s"
                )
                params.extend([ROTATION_GRACE_SECONDS, sealed_secret])
            row = conn.execute(
                f"UPDATE webhooks SET {', '.join(sets)} WHERE id = %s RETURNING {_COLUMNS}".encode(),
                [*params, webhook_id],
            ).fetchone()
            assert row is not None
            after = _webhook(row)
            after_snapshot = _snapshot(after)
            if sealed_secret is not None:
                after_snapshot["secret_rotated"] = True
            record(
                conn,
                AuditEntry(
                    actor=actor,
                    action="webhook.update",
                    entity_type="webhook",
                    entity_id=str(webhook_id),
                    before=_snapshot(before),
                    after=after_snapshot,
                ),
            )
            return after

        return self._db.run(work)

    def delete(self, webhook_id: UUID, *, actor: Actor) -> None:
        def work(conn: Connection) -> None:
            row = conn.execute(
                f"DELETE FROM webhooks WHERE id = %s RETURNING {_COLUMNS}".encode(), (webhook_id,)
            ).fetchone()
            if row is None:
                raise webhook_not_found(webhook_id)
            record(
                conn,
                AuditEntry(
                    actor=actor,
                    action="webhook.delete",
                    entity_type="webhook",
                    entity_id=str(webhook_id),
                    before=_snapshot(_webhook(row)),
                ),
            )

        self._db.run(work)

    # --- Messages -------------------------------------------------------------------------------------

    def fan_out(self, alerts: Sequence[Alert]) -> int:
        """A message per alert and enabled subscription that wants its kind (none twice); returns how many
        were new."""

        def work(conn: Connection) -> int:
            created = 0
            hooks = conn.execute("SELECT id, kinds FROM webhooks WHERE enabled").fetchall()
            for alert in alerts:
                body = json.dumps(
                    message_body(alert.kind.value, alert.created_at, alert.model_dump(mode="json")),
                    separators=(",", ":"),
                )
                for hook in hooks:
                    if alert.kind.value not in hook["kinds"]:
                        continue
                    cursor = conn.execute(
                        "INSERT INTO webhook_messages (id, webhook_id, alert_id, type, body)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (webhook_id, alert_id) DO NOTHING",
                        (message_id(), hook["id"], alert.id, alert.kind.value, body),
                    )
                    created += cursor.rowcount
            return created

        return self._db.run(work)

    def add_message(self, webhook_id: UUID, kind: str, body: str) -> str:
        """A message that belongs to no alert (a test event, a digest); returns its id."""
        msg_id = message_id()

        def work(conn: Connection) -> None:
            row = conn.execute("SELECT enabled FROM webhooks WHERE id = %s", (webhook_id,)).fetchone()
            if row is None:
                raise webhook_not_found(webhook_id)
            if not row["enabled"]:  # it would never be sent: say so instead of queueing it
                raise Conflict(
                    f"webhook {webhook_id} is disabled; PATCH it with enabled: true first", field="enabled"
                )
            conn.execute(
                "INSERT INTO webhook_messages (id, webhook_id, type, body) VALUES (%s, %s, %s, %s)",
                (msg_id, webhook_id, kind, body),
            )

        self._db.run(work)
        return msg_id

    def due(self, now: datetime, limit: int) -> list[str]:
        """Pending messages of enabled subscriptions whose next attempt is due, oldest first."""
        rows = self._db.run(
            lambda conn: conn.execute(
                "SELECT m.id FROM webhook_messages m JOIN webhooks w ON w.id = m.webhook_id"
                " WHERE m.status = 'pending' AND m.next_attempt_at <= %s AND w.enabled"
                " ORDER BY m.next_attempt_at, m.created_at LIMIT %s",
                (now, limit),
            ).fetchall(),
            transaction=False,
        )
        return [r["id"] for r in rows]

    def claim(self, msg_id: str, now: datetime, lease_seconds: float) -> ClaimedMessage | None:
        """Take a due message for one attempt (None if it is not due, done, or its webhook disabled)."""

        def work(conn: Connection) -> ClaimedMessage | None:
            row = conn.execute(
                "UPDATE webhook_messages m SET next_attempt_at = %s"
                " FROM webhooks w WHERE m.id = %s AND w.id = m.webhook_id AND w.enabled"
                " AND m.status = 'pending' AND m.next_attempt_at <= %s"
                " RETURNING m.id, m.webhook_id, w.url, m.type, m.body, m.attempts, w.secret_ciphertext,"
                " CASE WHEN w.previous_secret_until > %s THEN w.previous_secret_ciphertext END AS previous",
                (now + timedelta(seconds=lease_seconds), msg_id, now, now),
            ).fetchone()
            if row is None:
                return None
            return ClaimedMessage(
                row["id"],
                row["webhook_id"],
                row["url"],
                row["type"],
                row["body"],
                row["attempts"] + 1,
                bytes(row["secret_ciphertext"]),
                None if row["previous"] is None else bytes(row["previous"]),
            )

        return self._db.run(work)

    def record_attempt(
        self,
        message: ClaimedMessage,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: int | None,
        retry_at: datetime | None,
        disable_after: int,
    ) -> AttemptOutcome:
        """Log the attempt and settle the message: delivered, retried at `retry_at`, or given up (None).
        A subscription whose consecutive failed attempts reach `disable_after` is disabled (audited)."""

        def work(conn: Connection) -> AttemptOutcome:
            conn.execute(
                "INSERT INTO webhook_deliveries (message_id, webhook_id, attempt, status_code, ok, error,"
                " duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    message.id,
                    message.webhook_id,
                    message.attempt,
                    status_code,
                    ok,
                    None if error is None else error[:MAX_DELIVERY_ERROR_LENGTH],
                    duration_ms,
                ),
            )
            if ok:
                conn.execute(
                    "UPDATE webhook_messages SET status = 'delivered', attempts = %s, delivered_at = now()"
                    " WHERE id = %s",
                    (message.attempt, message.id),
                )
                conn.execute(
                    "UPDATE webhooks SET consecutive_failures = 0 WHERE id = %s", (message.webhook_id,)
                )
                return AttemptOutcome(True, False, None, False)
            if retry_at is None:
                conn.execute(
                    "UPDATE webhook_messages SET status = 'failed', attempts = %s WHERE id = %s",
                    (message.attempt, message.id),
                )
            else:
                conn.execute(
                    "UPDATE webhook_messages SET attempts = %s, next_attempt_at = %s WHERE id = %s",
                    (message.attempt, retry_at, message.id),
                )
            row = conn.execute(
                f"UPDATE webhooks SET consecutive_failures = consecutive_failures + 1 WHERE id = %s"
                f" RETURNING {_COLUMNS}".encode(),
                (message.webhook_id,),
            ).fetchone()
            disabled = False
            if row is not None and row["enabled"] and row["consecutive_failures"] >= disable_after:
                before = _webhook(row)
                after_row = conn.execute(
                    f"UPDATE webhooks SET enabled = false, disabled_reason = %s, updated_at = now()"
                    f" WHERE id = %s RETURNING {_COLUMNS}".encode(),
                    (f"{row['consecutive_failures']} failed attempts in a row", message.webhook_id),
                ).fetchone()
                assert after_row is not None
                record(
                    conn,
                    AuditEntry(
                        actor=SYSTEM_ACTOR,
                        action="webhook.disable",
                        entity_type="webhook",
                        entity_id=str(message.webhook_id),
                        before=_snapshot(before),
                        after=_snapshot(_webhook(after_row)),
                    ),
                )
                disabled = True
            return AttemptOutcome(False, retry_at is None, retry_at, disabled)

        return self._db.run(work)

    def deliveries(
        self, webhook_id: UUID, *, limit: int, cursor: str | None
    ) -> tuple[list[Delivery], str | None]:
        """The subscription's attempts, newest first; the cursor is the last attempt's log id."""
        after: int | None = None
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
                from abtest.errors import InvalidInput

                raise InvalidInput("cursor is not one this API returned", field="cursor")
            after = int(cursor)

        def work(conn: Connection) -> tuple[list[Delivery], str | None]:
            if conn.execute("SELECT 1 FROM webhooks WHERE id = %s", (webhook_id,)).fetchone() is None:
                raise webhook_not_found(webhook_id)
            rows = conn.execute(
                "SELECT d.id, d.message_id, m.type, d.attempt, d.attempted_at, d.status_code, d.ok, d.error,"
                " d.duration_ms FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id"
                " WHERE d.webhook_id = %s AND (%s::bigint IS NULL OR d.id < %s)"
                " ORDER BY d.id DESC LIMIT %s",
                (webhook_id, after, after, limit + 1),
            ).fetchall()
            items = [Delivery.model_validate(r) for r in rows[:limit]]
            more = len(rows) > limit
            return items, (str(rows[limit - 1]["id"]) if more else None)

        return self._db.run(work, transaction=False)

    # --- Digests --------------------------------------------------------------------------------------

    def digest_subscriptions(self) -> list[tuple[Webhook, datetime | None]]:
        """Enabled subscriptions with a digest schedule, and when their last digest was due."""
        rows = self._db.run(
            lambda conn: conn.execute(
                f"SELECT {_COLUMNS}, last_digest_at FROM webhooks"
                " WHERE enabled AND digest IS NOT NULL".encode()
            ).fetchall(),
            transaction=False,
        )
        return [(_webhook(r), r["last_digest_at"]) for r in rows]

    def queue_digest(self, webhook_id: UUID, slot: datetime, body: str) -> str | None:
        """Queue the digest due at `slot` unless one was already queued for it; returns the message id."""
        msg_id = message_id()

        def work(conn: Connection) -> str | None:
            row = conn.execute(
                "UPDATE webhooks SET last_digest_at = %s WHERE id = %s AND enabled"
                " AND (last_digest_at IS NULL OR last_digest_at < %s) RETURNING id",
                (slot, webhook_id, slot),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO webhook_messages (id, webhook_id, type, body) VALUES (%s, %s, 'digest', %s)",
                (msg_id, webhook_id, body),
            )
            return msg_id

        return self._db.run(work)
