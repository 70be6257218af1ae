"""IngestFunction: the writer of buffered ingestion (SQS batches; abtest.ingest.writer)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from abtest.ingest.writer import handle
from abtest.observability import logger


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
