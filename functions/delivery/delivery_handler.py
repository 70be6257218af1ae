"""DeliveryFunction: webhook deliveries from the SQS queue, and the sweep on a schedule.

An SQS batch carries message ids (`{"message_id": "msg_..."}`): each gets one attempt if it is due
(abtest.delivery.dispatch.Dispatcher.deliver); a record that raises is reported back as a batch item
failure, so SQS redelivers it and, after its receive limit, moves it to the dead-letter queue (the
message itself stays pending in the database, and the sweep finds it again).

The schedule's event (and the local server's timer, with `"deliver": true`) runs the sweep: digests
due, the outbox relayed, due messages enqueued (or, locally, attempted at once).
"""

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.delivery.dispatch import dispatcher_for, queue_digests
from abtest.observability import cloudwatch, logger, tracer
from abtest.settings import get_settings
from abtest.storage.alerts import AlertRepository
from abtest.storage.database import get_database


@logger.inject_lambda_context
@cloudwatch.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings, db = get_settings(), get_database()
    records = event.get("Records")
    if isinstance(records, list):
        dispatcher = dispatcher_for(settings, db)
        failures = []
        for item in records:
            try:
                outcome = dispatcher.deliver(json.loads(item["body"])["message_id"])
            except Exception:
                logger.exception("delivery failed", extra={"sqs_message_id": item.get("messageId")})
                failures.append({"itemIdentifier": item.get("messageId")})
                continue
            cloudwatch.add_metric(name=f"Webhook{outcome.capitalize()}", unit=MetricUnit.Count, value=1)
        return {"batchItemFailures": failures}
    dispatcher = dispatcher_for(settings, db)
    digests = queue_digests(dispatcher.webhooks, AlertRepository(db), datetime.now(UTC))
    run = dispatcher.relay()
    summary: dict[str, Any] = {"digests": digests, "relayed": run.alerts, "due_messages": len(run.enqueued)}
    if event.get("deliver"):
        summary["deliveries"] = dispatcher.deliver_due()
    # Locally the sweep runs every second: only a sweep that handed something on is worth a line.
    (logger.info if any(summary.values()) else logger.debug)("delivery sweep", extra=summary)
    return summary
