"""Where the door puts accepted events: an SQS queue in AWS, an in-process queue on the local server.

`send` either queues every body or raises Unavailable (503, Retry-After): a client retries the whole
request, which is safe, since every queued event carries an event_id and the writer stores an event_id
once.
"""

from __future__ import annotations

import itertools
import queue as stdlib_queue
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from abtest.errors import Unavailable
from abtest.limits import MAX_QUEUE_MESSAGE_BYTES
from abtest.observability import logger
from abtest.settings import Settings

SQS_BATCH_ENTRIES = 10  # SendMessageBatch's limit
SQS_BATCH_BYTES = 256 * 1024


class EventQueue(Protocol):
    def send(self, bodies: Sequence[str]) -> None: ...


class SqsQueue:
    """SendMessageBatch to one queue; entries that fail are sent once more, then the request fails."""

    def __init__(self, url: str, client: Any = None, region: str | None = None) -> None:
        self.url = url
        self._client = client
        self._region = region

    def _sqs(self) -> Any:
        if self._client is None:
            import boto3  # only the events function in buffered mode pays for it

            self._client = boto3.client("sqs", region_name=self._region)
        return self._client

    def send(self, bodies: Sequence[str]) -> None:
        for chunk in _chunks(bodies):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            for attempt in (1, 2):
                try:
                    answer = self._sqs().send_message_batch(QueueUrl=self.url, Entries=entries)
                except Exception as exc:  # botocore's errors: unreachable, throttled, access denied
                    logger.warning("queueing events failed", extra={"error": repr(exc)})
                    raise Unavailable("the event queue is unavailable; nothing was lost, retry") from exc
                failed = {entry["Id"] for entry in answer.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in failed]
                if not entries:
                    break
                if attempt == 2:
                    logger.warning("queueing events failed", extra={"failed": len(entries)})
                    raise Unavailable("the event queue refused some events; retry the request")


def _chunks(bodies: Sequence[str]) -> list[list[str]]:
    """SendMessageBatch calls: at most 10 entries and 256 KiB each (a body is at most 240,000 bytes)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        assert length <= MAX_QUEUE_MESSAGE_BYTES
        if current and (len(current) == SQS_BATCH_ENTRIES or size + length > SQS_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        chunks.append(current)
    return chunks


class LocalQueue:
    """The local server's queue: a thread hands SQS-shaped batches of up to 10 messages to `consume`
    (the writer), redelivers failed messages up to `max_receives` times, then keeps them aside as
    the dead-letter queue would."""

    def __init__(self, consume: Callable[[dict[str, Any]], dict[str, Any]], max_receives: int = 3) -> None:
        self._consume = consume
        self._max_receives = max_receives
        self._queue: stdlib_queue.Queue[tuple[str, str, int]] = stdlib_queue.Queue()
        self.dead_letters: list[str] = []
        self._thread = threading.Thread(target=self._run, name="local-ingest-queue", daemon=True)
        self._thread.start()

    def send(self, bodies: Sequence[str]) -> None:
        for body in bodies:
            self._queue.put((str(uuid.uuid4()), body, 1))

    def drain(self) -> None:
        """Wait until every message sent so far has been consumed or dead-lettered."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < SQS_BATCH_ENTRIES:
                try:
                    batch.append(self._queue.get_nowait())
                except stdlib_queue.Empty:
                    break
            try:
                self._deliver(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _deliver(self, batch: list[tuple[str, str, int]]) -> None:
        records = [sqs_record(message_id, body, receives) for message_id, body, receives in batch]
        try:
            answer = self._consume({"Records": records})
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        except Exception:
            logger.exception("the local ingest writer failed")
            failed = {message_id for message_id, _, _ in batch}
        for message_id, body, receives in batch:
            if message_id not in failed:
                continue
            if receives >= self._max_receives:
                self.dead_letters.append(body)
            else:
                self._queue.put((message_id, body, receives + 1))


_sequence = itertools.count(1)


def sqs_record(message_id: str, body: str, receives: int = 1) -> dict[str, Any]:
    """An SQS event record as Lambda's event source mapping delivers it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"local-{next(_sequence)}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receives)},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:local:000000000000:abtest-ingest",
        "awsRegion": "local",
    }


def queue_for(settings: Settings) -> EventQueue:
    """The queue buffered ingestion sends to (Unavailable if it is not configured)."""
    if settings.ingest_queue_url:
        return SqsQueue(settings.ingest_queue_url, region=settings.aws_region)
    if settings.auth_mode == "none":  # the local server: the writer runs in this process
        from abtest.ingest.writer import handle

        return LocalQueue(lambda event: handle(event, None))
    raise Unavailable("buffered ingestion needs INGEST_QUEUE_URL")
