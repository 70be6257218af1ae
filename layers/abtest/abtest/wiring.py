"""Wiring: the one place that builds repositories and services for the routes, and the one `reset()`.

A route asks for what it uses (`wiring.experiments().get(id)`); the container's Database behind every
repository is the cached one (abtest.storage.database.get_database), so a repository is cheap to build
per request. The assignment service holds caches (experiments, catalog, holdouts) and is built once
per container.

Imports are deferred to the first call: every function imports this module, and none must pay on
its cold start for repositories or services it never uses (the rollups' repository pulls in the
analysis and statistics packages, the assignment service the decision pipeline; test_cold_start holds
this).

Tests that change the environment call `reset()`: the next request reads the settings again, opens
a new database and builds a new assignment service.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from abtest import storage
from abtest.settings import get_settings
from abtest.storage.database import get_database

if TYPE_CHECKING:
    from abtest.delivery.dispatch import Dispatcher
    from abtest.delivery.secret_box import SecretBox
    from abtest.domain.serving import AssignmentService
    from abtest.ingest.queue import EventQueue
    from abtest.storage.alerts import AlertRepository
    from abtest.storage.assignments import AssignmentRepository
    from abtest.storage.audit import AuditRepository
    from abtest.storage.bandits import BanditRepository
    from abtest.storage.breakdowns import BreakdownRepository
    from abtest.storage.catalog import CatalogRepository
    from abtest.storage.config_schemas import ConfigSchemaRepository
    from abtest.storage.events import EventRepository
    from abtest.storage.experiments import ExperimentRepository
    from abtest.storage.holdouts import HoldoutRepository
    from abtest.storage.ingest import IngestRepository
    from abtest.storage.metric_definitions import MetricDefinitionRepository
    from abtest.storage.namespaces import NamespaceRepository
    from abtest.storage.overrides import OverrideRepository
    from abtest.storage.phase_metrics import PhaseMetricsRepository
    from abtest.storage.rollups import RollupRepository
    from abtest.storage.saved_groups import SavedGroupRepository
    from abtest.storage.webhooks import WebhookRepository


def experiments() -> ExperimentRepository:
    """Experiments: create, read, list, edit, change status, delete."""
    return storage.ExperimentRepository(get_database())


def config_schemas() -> ConfigSchemaRepository:
    """Surfaces' config schema versions and experiments' config phases."""
    return storage.ConfigSchemaRepository(get_database())


def overrides() -> OverrideRepository:
    """Per-user overrides (forced variants) and their counts."""
    return storage.OverrideRepository(get_database())


def namespaces() -> NamespaceRepository:
    """The surfaces' namespaces and the read-only lookup of a user's membership."""
    return storage.NamespaceRepository(get_database())


def saved_groups() -> SavedGroupRepository:
    """Saved groups of targeting."""
    return storage.SavedGroupRepository(get_database())


def holdouts() -> HoldoutRepository:
    """Holdouts and their statistics."""
    return storage.HoldoutRepository(get_database())


def metric_definitions() -> MetricDefinitionRepository:
    """Metric definitions (versioned) and the inputs of the analysis by role."""
    return storage.MetricDefinitionRepository(get_database())


def audit() -> AuditRepository:
    """The audit log's reads (writes are recorded by each repository in its own transaction)."""
    return storage.AuditRepository(get_database())


def events() -> EventRepository:
    """Exposures and conversions, alone or in batches."""
    return storage.EventRepository(get_database())


def phase_metrics() -> PhaseMetricsRepository:
    """Statistics of one config phase, and the phase labels of results."""
    return storage.PhaseMetricsRepository(get_database())


def rollups() -> RollupRepository:
    """Per-variant and daily metrics (rollups plus the tail)."""
    return storage.RollupRepository(get_database())


def bandits() -> BanditRepository:
    """Bandit reweights and their periods."""
    return storage.BanditRepository(get_database())


def breakdowns() -> BreakdownRepository:
    """Per-slice statistics of a dimension (rollups plus the tail)."""
    from abtest.storage.breakdowns import BreakdownRepository

    return BreakdownRepository(get_database())


def assignments() -> AssignmentRepository:
    """Stored assignments (the read-only lookup; enrollment goes through the assignment service)."""
    return storage.AssignmentRepository(get_database())


def catalog() -> CatalogRepository:
    """The recommender's catalog and user profiles."""
    return storage.CatalogRepository(get_database())


def alerts() -> AlertRepository:
    """Stored alerts, the experiments' monitors (sequential SRM) and the digest."""
    from abtest.storage.alerts import AlertRepository

    return AlertRepository(get_database())


def webhooks() -> WebhookRepository:
    """Webhook subscriptions, their messages and delivery log."""
    from abtest.storage.webhooks import WebhookRepository

    return WebhookRepository(get_database())


def secret_box() -> SecretBox:
    """Where webhook secrets are sealed: KMS in AWS, a local key file locally."""
    from abtest.delivery.secret_box import secret_box_for

    return secret_box_for(get_settings())


def dispatcher() -> Dispatcher:
    """The relay and delivery (with the queue and the event bus in AWS)."""
    from abtest.delivery.dispatch import dispatcher_for

    return dispatcher_for(get_settings(), get_database())


@lru_cache(maxsize=1)
def assignment_service() -> AssignmentService:
    """The decision pipeline with its per-container caches, built once per container."""
    from abtest.domain.serving import AssignmentService

    settings = get_settings()
    return AssignmentService(
        assignments(),
        catalog(),
        experiment_ttl=settings.experiment_cache_ttl_seconds,
        catalog_ttl=settings.catalog_cache_ttl_seconds,
    )


def ingest() -> IngestRepository:
    """Buffered ingestion's writes (queued events and their outcomes) and outcome reads."""
    from abtest.storage.ingest import IngestRepository

    return IngestRepository(get_database())


@lru_cache(maxsize=1)
def event_queue() -> EventQueue:
    """Where buffered ingestion queues events (SQS, or the local server's in-process queue)."""
    from abtest.ingest.queue import queue_for

    return queue_for(get_settings())


def reset() -> None:
    """Forget the cached settings, database and services: the next request reads the environment again."""
    get_database().close()
    get_database.cache_clear()
    get_settings.cache_clear()
    assignment_service.cache_clear()
    event_queue.cache_clear()
