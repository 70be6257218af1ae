"""The ingest writer: SQS batches of queued events into the database (IngestFunction's work).

Each message is stored alone, in one transaction (its events as one batch statement, then their
outcomes), through Powertools' BatchProcessor: a message that fails (undecodable, or the database
unavailable) is reported in `batchItemFailures`, so SQS redelivers only it, and after the queue's
maxReceiveCount moves it to the dead-letter queue; the other messages of the batch are done. A
redelivered message changes nothing: its events are already stored (duplicates), and their first
outcomes stay.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from abtest import wiring
from abtest.ingest.messages import decode
from abtest.observability import logger

# A batch whose every message failed (the database down) is answered with every message listed, like
# any partial failure, rather than raised: SQS redelivers them all the same, without a function error.
_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_message(record: SQSRecord) -> None:
    """Store one queued message's events (raises if the message cannot be stored now)."""
    message = decode(record.body)
    results = wiring.ingest().record(message.events, message.received_at, record.message_id)
    counts = {
        status: sum(r.status == status for r in results) for status in ("accepted", "duplicate", "rejected")
    }
    logger.info("queued events stored", extra={"queue_message_id": record.message_id, **counts})


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An SQS event: every message stored or reported as failed ({"batchItemFailures": [...]})."""
    answer: dict[str, Any] = dict(
        process_partial_response(
            event=event, record_handler=record_message, processor=_processor, context=context
        )
    )
    failures = len(answer.get("batchItemFailures", []))
    if failures:
        logger.warning("queued messages failed", extra={"failed": failures, "of": len(event["Records"])})
    try:
        wiring.ingest().prune()
    except Exception as exc:  # housekeeping must not fail a batch that was stored
        logger.info("pruning event outcomes failed", extra={"error": repr(exc)})
    return answer
