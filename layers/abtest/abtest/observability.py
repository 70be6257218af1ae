"""Powertools logger, metrics and tracer shared by every function.

Service name, metric namespace, log level and the switches that turn tracing and metrics off locally
come from the standard POWERTOOLS_* environment variables.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
cloudwatch = Metrics()  # EMF counts (AssignmentServed, ...); "metrics" is the API resource
tracer = Tracer()

# Most requests emit no business metric (reads, edits); that is normal, not worth a warning each time.
warnings.filterwarnings("ignore", message="No application metrics to publish")
