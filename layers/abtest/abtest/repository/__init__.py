"""The repository layer: the only code that holds SQL. It returns pydantic models or plain data and
turns driver errors into domain errors. Every write runs in one transaction or one statement, so a
failed request leaves nothing half-written."""

from abtest.repository.assignments import AssignmentRepository, StoredAssignment
from abtest.repository.events import EventRepository, RecordedConversion
from abtest.repository.experiments import ExperimentRepository, decode_cursor, encode_cursor
from abtest.repository.metrics import MetricsRepository, RollupRun

__all__ = [
    "AssignmentRepository",
    "EventRepository",
    "ExperimentRepository",
    "MetricsRepository",
    "RecordedConversion",
    "RollupRun",
    "StoredAssignment",
    "decode_cursor",
    "encode_cursor",
]
