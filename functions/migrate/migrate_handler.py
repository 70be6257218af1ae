"""MigrateFunction: the CloudFormation custom resource that migrates the database on every deploy.

Create and Update apply the pending SQL migrations (abtest.storage.schema) and set the application role's
statement_timeout in this database: the hot path runs some statements outside a transaction, where only
that role default bounds them (SET LOCAL covers transactions only). Delete does nothing: the data outlives
the stack. Whatever happens, CloudFormation gets an answer (SUCCESS, or FAILED with the reason) before
Lambda's own timeout, so a stack never waits for a response that will not come. Powertools v3 has no
custom resource helper (only the event class), so the answer is one PUT to the pre-signed ResponseURL.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.errors import Unavailable
from abtest.limits import MAX_FAILURE_REASON_LENGTH
from abtest.observability import logger, tracer
from abtest.settings import get_settings
from abtest.storage.database import get_database
from abtest.storage.schema import migrate_with_role_timeout

T = TypeVar("T")

PHYSICAL_RESOURCE_ID = "abtest-database-migrations"
# Kept back from Lambda's timeout to answer CloudFormation (at most half of what is left).
RESPONSE_MARGIN_SECONDS = 15.0
RESPONSE_ATTEMPTS = 2
RESPONSE_TIMEOUT_SECONDS = 5.0
# A newly created RDS Proxy target takes minutes to accept connections: keep trying until the deadline.
RETRY_INTERVAL_SECONDS = 5.0
STATEMENT_TIMEOUT_RANGE_MS = (100, 900_000)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Handle one CloudFormation request and always answer it; returns the answer sent."""
    request = CloudFormationCustomResourceEvent(event)
    deadline = _deadline(context)
    status, reason, data = "SUCCESS", "", {}
    try:
        if request.request_type in ("Create", "Update"):
            timeout_ms = role_statement_timeout_ms(request.resource_properties)
            applied = run_before(deadline, lambda: migrate(timeout_ms, deadline))
            data = {"Applied": ",".join(applied), "StatementTimeoutMs": str(timeout_ms)}
            logger.info("database migrated", extra={"applied": applied, "statement_timeout_ms": timeout_ms})
    except Exception as exc:  # every failure must reach CloudFormation as FAILED, never as silence
        logger.exception("database migration failed")
        status = "FAILED"
        detail = f"{type(exc).__name__}: {exc}"[:MAX_FAILURE_REASON_LENGTH]
        reason = f"{detail} (log stream {context.log_stream_name})"
    answer = {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": request.physical_resource_id or PHYSICAL_RESOURCE_ID,
        "StackId": request.stack_id,
        "RequestId": request.request_id,
        "LogicalResourceId": request.logical_resource_id,
        "NoEcho": False,
        "Data": data,
    }
    send_response(request.response_url, answer)
    return answer


def role_statement_timeout_ms(properties: dict[str, Any]) -> int:
    """The StatementTimeoutMs resource property (a string, as CloudFormation sends it), range-checked."""
    value = int(properties.get("StatementTimeoutMs", get_settings().db_statement_timeout_ms))
    low, high = STATEMENT_TIMEOUT_RANGE_MS
    if not low <= value <= high:
        raise ValueError(f"StatementTimeoutMs must be between {low} and {high}, not {value}")
    return value


def migrate(role_timeout_ms: int, deadline: float) -> list[str]:
    """Apply the pending migrations and the role's statement timeout; return the versions applied."""
    database = get_database()
    try:
        while True:
            try:
                return database.run(
                    lambda conn: migrate_with_role_timeout(conn, role_timeout_ms, deadline), transaction=False
                )
            except Unavailable as exc:
                if time.monotonic() + RETRY_INTERVAL_SECONDS >= deadline:
                    raise
                logger.info("database not reachable yet; retrying", extra={"error": str(exc)})
                time.sleep(RETRY_INTERVAL_SECONDS)
    finally:
        database.close()  # the connection belongs to this thread, which ends here


def run_before(deadline: float, work: Callable[[], T]) -> T:
    """Run `work` in a worker thread and stop waiting for it at `deadline` (TimeoutError)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="migrate", daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0.0))
    if worker.is_alive():
        raise TimeoutError("the migration did not finish before the function's timeout")
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["value"]
    return result


def send_response(url: str, answer: dict[str, Any]) -> None:
    """PUT the answer to CloudFormation's pre-signed URL. Failures are logged, never raised."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        logger.error("ResponseURL is not an http(s) URL; no answer sent")
        return
    body = json.dumps(answer).encode()
    # The pre-signed S3 URL is signed without a content type: send an empty one.
    headers = {"Content-Type": "", "Content-Length": str(len(body))}
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers)  # noqa: S310 - http(s) only
    for attempt in range(1, RESPONSE_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS) as response:  # noqa: S310
                logger.info(
                    "answered CloudFormation", extra={"status": answer["Status"], "http": response.status}
                )
                return
        except OSError as exc:  # urllib.error.URLError and HTTPError are OSErrors
            logger.warning("answering CloudFormation failed", extra={"attempt": attempt, "error": str(exc)})
            if attempt < RESPONSE_ATTEMPTS:
                time.sleep(1.0)
    logger.error("could not answer CloudFormation; the stack operation will time out")


def _deadline(context: LambdaContext) -> float:
    """When the work must stop (time.monotonic()), leaving time to answer before Lambda's timeout."""
    remaining = context.get_remaining_time_in_millis() / 1000
    return time.monotonic() + remaining - min(RESPONSE_MARGIN_SECONDS, remaining / 2)
