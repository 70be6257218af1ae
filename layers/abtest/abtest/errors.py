"""Error codes and domain errors. The repository turns driver errors into these; the HTTP layer maps them
to statuses.

`ErrorCode` is the one home of every code the service answers in an error body's `"error"` (and of the
statistics CLI's): code elsewhere names a member, never the string (tests/unit/test_architecture.py checks
it), and docs/errors.md lists each code with its status. A StrEnum serialises to the same JSON string.
This module imports nothing of the service: the statistics engine, which stands alone, shares it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID


class ErrorCode(StrEnum):
    """Every machine-readable error code of the API, the local server and `python -m abtest.stats`."""

    # Requests refused before or by the resolver
    BAD_REQUEST = "bad_request"
    BODY_TOO_LARGE = "body_too_large"
    DUPLICATE_KEY = "duplicate_key"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    INTERNAL_ERROR = "internal_error"
    INVALID_HEADER = "invalid_header"
    INVALID_JSON = "invalid_json"
    INVALID_PATH = "invalid_path"
    NOT_FOUND = "not_found"
    ROUTE_NOT_FOUND = "route_not_found"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    DATABASE_UNAVAILABLE = "database_unavailable"
    # Experiments and their lifecycle
    CONFLICT = "conflict"
    DUPLICATE_NAME = "duplicate_name"
    DUPLICATE_SALT = "duplicate_salt"
    DUPLICATE_VARIANT_NAME = "duplicate_variant_name"
    EXPERIMENT_COMPLETED = "experiment_completed"
    EXPERIMENT_HAS_HISTORY = "experiment_has_history"
    EXPERIMENT_NOT_DRAFT = "experiment_not_draft"
    EXPERIMENT_NOT_FOUND = "experiment_not_found"
    EXPERIMENT_NOT_RUNNING = "experiment_not_running"
    FIELD_FROZEN = "field_frozen"
    INVALID_TRANSITION = "invalid_transition"
    NAMESPACE_FULL = "namespace_full"
    SHARE_DECREASE = "share_decrease"
    SURFACE_NOT_FOUND = "surface_not_found"
    TRAFFIC_DECREASE = "traffic_decrease"
    # Overrides, saved groups, holdouts, metrics, webhooks
    HOLDOUT_NOT_FOUND = "holdout_not_found"
    INVALID_WEBHOOK_URL = "invalid_webhook_url"
    METRIC_NOT_FOUND = "metric_not_found"
    OVERRIDE_NOT_FOUND = "override_not_found"
    SAVED_GROUP_IN_USE = "saved_group_in_use"
    SAVED_GROUP_NOT_FOUND = "saved_group_not_found"
    TOO_MANY_OVERRIDES = "too_many_overrides"
    UNKNOWN_VARIANT = "unknown_variant"
    # Events
    EVENT_BEFORE_ASSIGNMENT = "event_before_assignment"
    EVENT_BEFORE_START = "event_before_start"
    EVENT_ID_REUSED = "event_id_reused"
    TOO_MANY_METRICS = "too_many_metrics"
    USER_NOT_ASSIGNED = "user_not_assigned"
    # The statistics CLI (python -m abtest.stats); it also answers invalid_json and internal_error
    INVALID_INPUT = "invalid_input"
    INVALID_STATISTICS = "invalid_statistics"
    # Bandits
    NOT_A_BANDIT = "not_a_bandit"
    # Metric definitions and roles (issue 22)
    METRIC_DEFINITION_NOT_FOUND = "metric_definition_not_found"
    METRIC_DEFINITION_IN_USE = "metric_definition_in_use"
    UNKNOWN_METRIC_DEFINITION = "unknown_metric_definition"
    # Webhooks (issue 23)
    WEBHOOK_NOT_FOUND = "webhook_not_found"
    TOO_MANY_WEBHOOKS = "too_many_webhooks"
    # Config schemas of surfaces and config phases of experiments
    CONFIG_SCHEMA_NOT_FOUND = "config_schema_not_found"
    CONFIG_SCHEMA_VIOLATED = "config_schema_violated"
    CONFIG_VERSION_NOT_FOUND = "config_version_not_found"
    TOO_MANY_PHASES = "too_many_phases"
    # Breakdowns and stratified assignment
    BLOCK_TOO_LARGE = "block_too_large"
    STRATIFIED_BANDIT = "stratified_bandit"
    UNKNOWN_DIMENSION = "unknown_dimension"
    # Buffered ingestion (issue 27)
    EVENT_OUTCOME_NOT_FOUND = "event_outcome_not_found"
    OVERLOADED = "overloaded"


class DomainError(Exception):
    """Base class: `code` is the stable machine-readable error name, `field` the input it concerns."""

    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Extra machine-readable facts for the error body (e.g. free_share of a full namespace).
        self.details: dict[str, Any] = {}


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND

    def __init__(
        self, message: str, *, code: ErrorCode = ErrorCode.NOT_FOUND, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code = code


class Conflict(DomainError):
    """The request is well-formed but clashes with what is stored (duplicate name, frozen field)."""

    code = ErrorCode.CONFLICT

    def __init__(
        self, message: str, *, code: ErrorCode = ErrorCode.CONFLICT, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code = code


class InvalidTransition(Conflict):
    """A lifecycle transition the state machine does not allow."""

    def __init__(self, current: str, target: str, allowed: Sequence[str]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none (final state)"
        super().__init__(
            f"cannot change status from {current} to {target}; allowed from {current}: {allowed_text}",
            code=ErrorCode.INVALID_TRANSITION,
            field="status",
        )
        self.current = current
        self.target = target
        self.allowed = list(allowed)


class Unavailable(DomainError):
    """The database cannot be reached or did not answer in time; nothing was written."""

    code = ErrorCode.DATABASE_UNAVAILABLE


class InvalidInput(DomainError):
    """Input that passed schema validation but is still unusable (e.g. a tampered cursor)."""

    code = ErrorCode.VALIDATION_ERROR

    def __init__(
        self, message: str, *, code: ErrorCode = ErrorCode.VALIDATION_ERROR, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code = code


class BadRequest(DomainError):
    """A request that is malformed below the JSON level (e.g. a path that is not UTF-8): HTTP 400."""

    code = ErrorCode.BAD_REQUEST

    def __init__(
        self, message: str, *, code: ErrorCode = ErrorCode.BAD_REQUEST, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.code = code


def experiment_not_found(experiment_id: UUID) -> NotFound:
    """The 404 for an experiment id that names no experiment (the same words from every route)."""
    return NotFound(f"no experiment with id {experiment_id}", code=ErrorCode.EXPERIMENT_NOT_FOUND, field="id")
