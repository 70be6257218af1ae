"""The relay and the delivery: from the outbox to signed HTTP attempts, never inside a rollup's or a
request's transaction.

`relay` (each rollup tick, and the DeliveryFunction's scheduled sweep): the outbox's unrelayed alerts
get one message per subscription that wants their kind (none twice: see storage.webhooks), are put on
the EventBridge bus (AWS), then marked relayed; a crash in between relays them again (at least once,
same message ids). Then every due message (new, or a retry whose time came, or one whose delivery died
after its claim) is handed to the queue: SQS in AWS, whose DeliveryFunction calls `deliver`; locally
the local server's timer calls `deliver_due`, the same code.

`deliver`: claim, sign afresh (new timestamp, same id), POST to the checked, pinned address, record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from abtest.delivery.pinned_http import DeliveryResponse, post, system_resolver
from abtest.delivery.secret_box import SecretBox, SecretBoxError, secret_box_for
from abtest.domain.alerts import DETAIL_TYPES, DIGEST_TYPE, EVENT_SOURCE, Alert, backoff_seconds, message_body
from abtest.domain.digests import latest_slot, period_start
from abtest.domain.webhook_signing import signed_headers
from abtest.domain.webhook_urls import PinnedWebhookUrl, UnsafeWebhookUrl, pin_webhook_url
from abtest.limits import MAX_RELAY_BATCH
from abtest.observability import logger
from abtest.settings import Settings
from abtest.storage.alerts import AlertRepository, EvaluationSettings, OutboxRepository
from abtest.storage.bandits import BanditRepository
from abtest.storage.database import Database
from abtest.storage.webhooks import ClaimedMessage, WebhookRepository

USER_AGENT = "abtest-webhooks/1"
Sender = Callable[[PinnedWebhookUrl, bytes, dict[str, str]], DeliveryResponse]
Resolver = Callable[[str, int], list[str]]


class Publisher(Protocol):
    def publish(self, alerts: Sequence[Alert]) -> None: ...


class Queue(Protocol):
    def enqueue(self, message_ids: Sequence[str], delay_seconds: int = 0) -> None: ...


class EventBridgePublisher:
    """Puts every alert on the event bus, with the documented detail-type of its kind."""

    def __init__(self, bus_name: str, client: Any) -> None:
        self._bus = bus_name
        self._client = client

    def publish(self, alerts: Sequence[Alert]) -> None:
        for start in range(0, len(alerts), 10):  # PutEvents takes 10 entries at most
            batch = alerts[start : start + 10]
            answer = self._client.put_events(
                Entries=[
                    {
                        "EventBusName": self._bus,
                        "Source": EVENT_SOURCE,
                        "DetailType": DETAIL_TYPES[alert.kind],
                        "Detail": alert.model_dump_json(),
                        "Resources": [],
                    }
                    for alert in batch
                ]
            )
            if answer.get("FailedEntryCount"):
                # Not marked relayed: the next relay puts them again (consumers deduplicate on the id).
                raise RuntimeError(f"EventBridge refused {answer['FailedEntryCount']} alert(s)")


class SqsQueue:
    """Hands message ids to the DeliveryFunction's queue."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self._url = queue_url
        self._client = client

    def enqueue(self, message_ids: Sequence[str], delay_seconds: int = 0) -> None:
        for start in range(0, len(message_ids), 10):  # SendMessageBatch takes 10 at most
            batch = message_ids[start : start + 10]
            answer = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {
                        "Id": str(index),
                        "MessageBody": json.dumps({"message_id": msg_id}),
                        "DelaySeconds": max(0, min(delay_seconds, 900)),
                    }
                    for index, msg_id in enumerate(batch)
                ],
            )
            if answer.get("Failed"):
                # Still pending in the table: the next sweep enqueues them again.
                logger.warning("messages not enqueued", extra={"failed": len(answer["Failed"])})


@dataclass(frozen=True)
class RelayRun:
    alerts: int = 0
    messages: int = 0
    enqueued: list[str] = field(default_factory=list)


@dataclass
class Dispatcher:
    """Relay and delivery over the repositories, with AWS clients where configured."""

    outbox: OutboxRepository
    webhooks: WebhookRepository
    settings: Settings
    box: Callable[[], SecretBox]
    publisher: Publisher | None = None
    queue: Queue | None = None
    resolver: Resolver = system_resolver
    sender: Sender = post
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def relay(self) -> RelayRun:
        """Hand the outbox on (see the module docstring); returns what was handed on."""
        alerts = self.outbox.unrelayed(MAX_RELAY_BATCH)
        messages = self.webhooks.fan_out(alerts) if alerts else 0
        if alerts and self.publisher is not None:
            self.publisher.publish(alerts)
        self.outbox.mark_relayed([alert.id for alert in alerts])
        due = self.webhooks.due(self.clock(), MAX_RELAY_BATCH)
        if due and self.queue is not None:
            self.queue.enqueue(due)
        return RelayRun(len(alerts), messages, due)

    def deliver(self, msg_id: str) -> str:
        """One attempt of a message, if it is due: `delivered`, `retry`, `failed`, or `skipped`."""
        now = self.clock()
        claimed = self.webhooks.claim(msg_id, now, self.settings.webhook_lease_seconds)
        if claimed is None:
            return "skipped"
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        ok = False
        try:
            ok, status_code, error = self._attempt(claimed)
        except SecretBoxError as exc:
            error = f"secret: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        retry_at = None
        if not ok and claimed.attempt < self.settings.webhook_max_attempts:
            delay = backoff_seconds(
                claimed.attempt,
                base=self.settings.webhook_retry_base_seconds,
                cap=self.settings.webhook_retry_cap_seconds,
            )
            retry_at = self.clock() + timedelta(seconds=delay)
        outcome = self.webhooks.record_attempt(
            claimed,
            ok=ok,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            retry_at=retry_at,
            disable_after=self.settings.webhook_disable_after_failures,
        )
        log = {"message_id": claimed.id, "webhook_id": str(claimed.webhook_id), "attempt": claimed.attempt}
        if outcome.delivered:
            logger.info("webhook delivered", extra=log)
            return "delivered"
        logger.warning("webhook attempt failed", extra={**log, "status_code": status_code, "error": error})
        if outcome.disabled:
            logger.warning("webhook disabled after repeated failures", extra=log)
        if retry_at is not None and self.queue is not None:
            self.queue.enqueue([claimed.id], delay_seconds=int((retry_at - self.clock()).total_seconds()) + 1)
        return "retry" if retry_at is not None else "failed"

    def _attempt(self, claimed: ClaimedMessage) -> tuple[bool, int | None, str | None]:
        try:
            pinned = pin_webhook_url(
                claimed.url, local_mode=self.settings.webhook_local_mode, resolve=self.resolver
            )
        except UnsafeWebhookUrl as exc:
            return False, None, exc.message
        box = self.box()
        secrets_in_use = [box.open(claimed.secret_ciphertext)]
        if claimed.previous_secret_ciphertext is not None:  # a rotation's grace period: both sign
            secrets_in_use.append(box.open(claimed.previous_secret_ciphertext))
        body = claimed.body.encode()
        headers = {
            **signed_headers(secrets_in_use, claimed.id, body, now=self.clock()),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        try:
            response = self.sender(pinned, body, headers)
        except OSError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"
        if response.ok:
            return True, response.status, None
        return False, response.status, f"HTTP {response.status}"

    def deliver_due(self, limit: int = MAX_RELAY_BATCH) -> dict[str, int]:
        """Attempt every due message now (the local server's timer; AWS goes through the queue)."""
        outcomes: dict[str, int] = {}
        for msg_id in self.webhooks.due(self.clock(), limit):
            outcome = self.deliver(msg_id)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes


def queue_digests(webhooks: WebhookRepository, alerts: AlertRepository, now: datetime) -> int:
    """Queue each subscription's digest whose slot has come (once per slot); returns how many."""
    queued = 0
    bodies: dict[tuple[str, datetime], str] = {}
    for webhook, last in webhooks.digest_subscriptions():
        schedule = webhook.digest
        if schedule is None:
            continue
        slot = latest_slot(schedule, now)
        if last is not None and last >= slot:
            continue
        key = (schedule.every, slot)
        if key not in bodies:
            digest = alerts.digest(period_start(schedule, slot), slot)
            bodies[key] = json.dumps(
                message_body(DIGEST_TYPE, slot, digest.model_dump(mode="json")), separators=(",", ":")
            )
        if webhooks.queue_digest(webhook.id, slot, bodies[key]) is not None:
            queued += 1
    return queued


def dispatcher_for(settings: Settings, db: Database) -> Dispatcher:
    """The dispatcher with the AWS clients the settings name (none locally)."""
    publisher: Publisher | None = None
    queue: Queue | None = None
    if settings.alert_event_bus or settings.webhook_queue_url:
        import boto3

        if settings.alert_event_bus:
            publisher = EventBridgePublisher(
                settings.alert_event_bus, boto3.client("events", region_name=settings.aws_region)
            )
        if settings.webhook_queue_url:
            queue = SqsQueue(settings.webhook_queue_url, boto3.client("sqs", region_name=settings.aws_region))
    return Dispatcher(
        OutboxRepository(db),
        WebhookRepository(db),
        settings,
        box=lambda: secret_box_for(settings),
        publisher=publisher,
        queue=queue,
    )


def alerts_tick(settings: Settings, db: Database, *, deliver: bool = False) -> dict[str, Any]:
    """What each rollup tick does after the rollup: evaluate the alerts (sequential SRM included), queue
    due digests, relay the outbox; with `deliver` (the local server) also attempt the due messages."""
    now = datetime.now(UTC)
    alerts = AlertRepository(db)
    evaluation = alerts.evaluate(
        now,
        EvaluationSettings(
            srm_threshold=settings.srm_alert_threshold, no_exposures_hours=settings.no_exposures_hours
        ),
        # A bandit's new users are tested against the weights of the period that enrolled them.
        periods=BanditRepository(db).srm_source(),
    )
    dispatcher = dispatcher_for(settings, db)
    digests = queue_digests(dispatcher.webhooks, alerts, now)
    run = dispatcher.relay()
    summary: dict[str, Any] = {
        "alerts": [f"{alert.kind.value}:{alert.experiment_id}" for alert in evaluation.alerts],
        "srm_flagged": [str(experiment_id) for experiment_id in evaluation.srm_flagged],
        "digests": digests,
        "relayed": run.alerts,
        "due_messages": len(run.enqueued),
    }
    if deliver:
        summary["deliveries"] = dispatcher.deliver_due()
    return summary
