"""Path and query parameter types several routes share, each with its limits and its OpenAPI text."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Path

ExperimentId = Annotated[UUID, Path(description="Experiment id (UUID)")]
