"""The AWS side of alerts through real boto3 against moto: webhook secrets sealed by KMS, every alert put
on the EventBridge bus with its kind's detail-type, due messages handed to SQS, and the DeliveryFunction
driven by an SQS batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from abtest import wiring
from abtest.delivery.dispatch import Dispatcher, EventBridgePublisher, SqsQueue
from abtest.delivery.secret_box import KmsSecretBox
from abtest.domain.alerts import DETAIL_TYPES, EVENT_SOURCE, AlertKind, WebhookCreate
from abtest.domain.audit import SYSTEM_ACTOR
from abtest.domain.webhook_signing import generate_secret
from abtest.settings import settings_from_env
from abtest.storage.alerts import OutboxRepository
from abtest.storage.database import get_database
from abtest.storage.webhooks import WebhookRepository
from localdev.lambda_events import LocalLambdaContext
from tests.integration.test_alerts import skewed
from tests.webhook_receiver import Receiver

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        key_id = kms.create_key(Description="webhook secrets")["KeyMetadata"]["KeyId"]
        events = boto3.client("events", region_name=REGION)
        events.create_event_bus(Name="alerts")
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
        # A rule on the bus that copies every alert to a queue, as a team's rule would route it.
        tap_url = sqs.create_queue(QueueName="tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(
            Name="all-alerts", EventBusName="alerts", EventPattern=json.dumps({"source": [EVENT_SOURCE]})
        )
        events.put_targets(Rule="all-alerts", EventBusName="alerts", Targets=[{"Id": "tap", "Arn": tap_arn}])
        yield {
            "kms": kms,
            "key_id": key_id,
            "events": events,
            "sqs": sqs,
            "queue_url": queue_url,
            "tap": tap_url,
        }


def test_kms_seals_secrets_that_only_its_key_and_context_open(aws: dict[str, Any]) -> None:
    box = KmsSecretBox(aws["key_id"], aws["kms"])
    secret = generate_secret()
    sealed = box.seal(secret)
    assert secret.encode() not in sealed
    assert box.open(sealed) == secret
    other = aws["kms"].create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(Exception, match=r"InvalidCiphertext|IncorrectKey|AccessDenied"):
        KmsSecretBox(other, aws["kms"]).open(sealed)


def test_alerts_go_on_the_bus_with_their_detail_type_and_messages_to_the_queue(
    api: Any,
    clean_db: str,
    aws: dict[str, Any],
    receiver: Receiver,
) -> None:
    box = KmsSecretBox(aws["key_id"], aws["kms"])
    db = get_database()
    secret = generate_secret()
    WebhookRepository(db).create(
        WebhookCreate(url=receiver.url), box.seal(secret), actor=SYSTEM_ACTOR, last_digest_at=None
    )
    experiment = skewed(api, clean_db)
    settings = settings_from_env({"WEBHOOK_LOCAL_MODE": "true"})
    dispatcher = Dispatcher(
        OutboxRepository(db),
        WebhookRepository(db),
        settings,
        box=lambda: box,
        publisher=EventBridgePublisher("alerts", aws["events"]),
        queue=SqsQueue(aws["queue_url"], aws["sqs"]),
    )
    run = dispatcher.relay()
    assert run.alerts == 1
    (tapped,) = aws["sqs"].receive_message(QueueUrl=aws["tap"], MaxNumberOfMessages=10)["Messages"]
    event = json.loads(tapped["Body"])
    assert (event["source"], event["detail-type"]) == (EVENT_SOURCE, DETAIL_TYPES[AlertKind.SRM_DETECTED])
    assert event["detail"]["experiment_id"] == experiment["id"]
    assert event["detail"]["kind"] == "srm_detected"

    queued = aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["message_id"] for m in queued] == run.enqueued

    # The DeliveryFunction, as SQS invokes it, with the KMS key of its environment.
    import delivery_handler

    environment = {"WEBHOOK_KMS_KEY_ID": aws["key_id"], "AWS_REGION": REGION}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        wiring.reset()
        from abtest.delivery import secret_box

        secret_box._kms_box.cache_clear()
        answer = delivery_handler.lambda_handler(
            {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in queued]},
            LocalLambdaContext(function_name="DeliveryFunction"),
        )
    wiring.reset()
    assert answer == {"batchItemFailures": []}
    ((headers, _),) = receiver.requests
    assert headers["webhook-id"] == run.enqueued[0]
    assert datetime.now(UTC).timestamp() - int(headers["webhook-timestamp"]) < 60
