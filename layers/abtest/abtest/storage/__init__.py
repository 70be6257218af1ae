"""The repository layer: the only code that holds SQL. It returns pydantic models or plain data and
turns driver errors into domain errors. Every write runs in one transaction or one statement, so a
failed request leaves nothing half-written."""

from abtest.storage.assignments import AssignmentRepository, StoredAssignment
from abtest.storage.catalog import CatalogRepository
from abtest.storage.events import EventRepository, RecordedConversion
from abtest.storage.experiments import ExperimentRepository, decode_cursor, encode_cursor
from abtest.storage.holdouts import HoldoutRepository
from abtest.storage.namespaces import NamespaceRepository
from abtest.storage.overrides import OverrideRepository
from abtest.storage.rollups import RollupRepository, RollupRun
from abtest.storage.saved_groups import SavedGroupRepository

__all__ = [
    "AssignmentRepository",
    "CatalogRepository",
    "EventRepository",
    "ExperimentRepository",
    "HoldoutRepository",
    "NamespaceRepository",
    "OverrideRepository",
    "RecordedConversion",
    "RollupRepository",
    "RollupRun",
    "SavedGroupRepository",
    "StoredAssignment",
    "decode_cursor",
    "encode_cursor",
]
