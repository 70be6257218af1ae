"""Serve-time side of config schemas: notice a cache older than the database's configs (abtest.domain.serving
calls it on every decision; the rule that never serves a config failing its schema is
abtest.domain.served.checked_config).

Validity is never computed here: it is stamped on each variant when its config or the surface's schema
is written (`config_valid`, `schema_version`: abtest.storage.config_schemas), once per config version and
schema version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from abtest.domain.assignment import Enrollment

if TYPE_CHECKING:
    from abtest.domain.namespaces import ServingView


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
