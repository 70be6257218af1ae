"""What a user is served: the outcome of deciding about them (experiment, variant, reason), and the rule
that never serves a config failing its surface's current schema."""

from __future__ import annotations

from dataclasses import dataclass, replace

from abtest.domain.assignment import Reason, experiment_variant_tag
from abtest.domain.experiments import Experiment, Variant
from abtest.domain.overrides import Source


@dataclass(frozen=True)
class Assignment:
    """The outcome of deciding about one user: the experiment it concerns (if any) and why."""

    experiment: Experiment | None
    reason: Reason
    variant: Variant | None = None
    new_assignment: bool = False
    exposure_recorded: bool = False
    # The variant whose config is served, when it is not `variant` (config_invalid: control's).
    config_variant: Variant | None = None

    @property
    def served(self) -> Variant | None:
        """The variant whose config (and config version) the user is served."""
        return self.config_variant or self.variant

    @property
    def source(self) -> Source | None:
        """Where the served variant comes from: the stored assignment, an override, or none."""
        if self.variant is None:
            return None
        return "override" if self.reason == Reason.OVERRIDE else "assignment"

    @property
    def tag(self) -> str | None:
        """ "experiment_name:variant_name" when the user is enrolled."""
        if self.variant is None or self.experiment is None:
            return None
        return experiment_variant_tag(self.experiment.name, self.variant.name)


def checked_config(assigned: Assignment) -> Assignment:
    """Never serve a config that fails the surface's current schema (its validity is precomputed per
    config version and schema version, stamped on the variant): the user keeps their variant (intent to
    treat; the exposure is marked config_fallback by the database) but is served control's config, or
    untagged defaults if control's fails too."""
    variant, experiment = assigned.variant, assigned.experiment
    if variant is None or experiment is None or variant.config_valid:
        return assigned
    control = experiment.variants[0]
    if control.config_valid:
        return replace(assigned, reason=Reason.CONFIG_INVALID, config_variant=control)
    return Assignment(experiment, Reason.CONFIG_INVALID, exposure_recorded=assigned.exposure_recorded)
