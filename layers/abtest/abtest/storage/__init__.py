"""The repository layer: the only code that holds SQL. It returns pydantic models or plain data and
turns driver errors into domain errors. Every write runs in one transaction or one statement, so a
failed request leaves nothing half-written.

The names below are imported on first access (PEP 562), so `from abtest.storage import
AssignmentRepository` loads that repository's module only: a handler does not pay, on its cold start,
for repositories it never uses (the rollups' pulls in the analysis and statistics packages).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abtest.storage.assignments import AssignmentRepository, StoredAssignment
    from abtest.storage.audit import AuditRepository
    from abtest.storage.bandits import BanditRepository
    from abtest.storage.catalog import CatalogRepository
    from abtest.storage.config_schemas import ConfigSchemaRepository
    from abtest.storage.events import EventRepository, RecordedConversion
    from abtest.storage.experiments import ExperimentRepository
    from abtest.storage.holdouts import HoldoutRepository
    from abtest.storage.metric_definitions import MetricDefinitionRepository
    from abtest.storage.namespaces import NamespaceRepository
    from abtest.storage.overrides import OverrideRepository
    from abtest.storage.phase_metrics import PhaseMetricsRepository
    from abtest.storage.rollups import RollupRepository, RollupRun
    from abtest.storage.saved_groups import SavedGroupRepository

# Each public name and the module that defines it.
_HOMES = {
    "AssignmentRepository": "abtest.storage.assignments",
    "StoredAssignment": "abtest.storage.assignments",
    "AuditRepository": "abtest.storage.audit",
    "BanditRepository": "abtest.storage.bandits",
    "CatalogRepository": "abtest.storage.catalog",
    "ConfigSchemaRepository": "abtest.storage.config_schemas",
    "EventRepository": "abtest.storage.events",
    "RecordedConversion": "abtest.storage.events",
    "ExperimentRepository": "abtest.storage.experiments",
    "HoldoutRepository": "abtest.storage.holdouts",
    "MetricDefinitionRepository": "abtest.storage.metric_definitions",
    "NamespaceRepository": "abtest.storage.namespaces",
    "OverrideRepository": "abtest.storage.overrides",
    "PhaseMetricsRepository": "abtest.storage.phase_metrics",
    "RollupRepository": "abtest.storage.rollups",
    "RollupRun": "abtest.storage.rollups",
    "SavedGroupRepository": "abtest.storage.saved_groups",
}

__all__ = [
    "AssignmentRepository",
    "AuditRepository",
    "BanditRepository",
    "CatalogRepository",
    "ConfigSchemaRepository",
    "EventRepository",
    "ExperimentRepository",
    "HoldoutRepository",
    "MetricDefinitionRepository",
    "NamespaceRepository",
    "OverrideRepository",
    "PhaseMetricsRepository",
    "RecordedConversion",
    "RollupRepository",
    "RollupRun",
    "SavedGroupRepository",
    "StoredAssignment",
]


def __getattr__(name: str) -> Any:
    """Import the module defining `name` on first access (then it is a plain module attribute)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
