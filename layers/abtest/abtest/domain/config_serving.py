"""Serve-time side of config schemas: never serve a config that fails its surface's current schema, and
notice a cache older than the database's configs (abtest.domain.serving calls both on every decision).

Validity is never computed here: it is stamped on each variant when its config or the surface's schema
is written (`config_valid`, `schema_version`: abtest.storage.config_schemas), once per config version and
schema version.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from abtest.domain.assignment import Enrollment, Reason

if TYPE_CHECKING:
    from abtest.domain.namespaces import ServingView
    from abtest.domain.serving import Assignment


def checked_config(assigned: Assignment) -> Assignment:
    """The assignment as served: a variant whose config fails the schema keeps the user (intent to treat;
    the database marks the exposure config_fallback) but is served control's config, reason
    config_invalid; if control's fails too, untagged defaults (no variant), still config_invalid."""
    variant, experiment = assigned.variant, assigned.experiment
    if variant is None or experiment is None or variant.config_valid:
        return assigned
    control = experiment.variants[0]
    if control.config_valid:
        return replace(assigned, reason=Reason.CONFIG_INVALID, config_variant=control)
    return replace(
        assigned, reason=Reason.CONFIG_INVALID, variant=None, config_variant=None, new_assignment=False
    )


def stale_config(view: ServingView, enrollment: Enrollment) -> bool:
    """Whether the cache holds an older config phase or schema stamp than the database: a config change
    or a schema publish since it was loaded (its configs must not be served)."""
    live = view.experiments.get(enrollment.experiment_id) if enrollment.experiment_id else None
    if live is None or enrollment.phase is None:
        return False
    if live.experiment.phase != enrollment.phase:
        return True
    served = enrollment.forced_variant_id or enrollment.variant_id
    variant = next((v for v in live.experiment.variants if v.id == served), None)
    return variant is not None and variant.schema_version != enrollment.schema_version
