"""Results by config phase: which phase a read analyses, and the labels the results and time series carry.

A new config is a different treatment, so `/results` and the report analyse the latest phase by default:
the users exposed in it (whenever they were first exposed), their exposures in it, and their conversions
from their first exposure in the phase until the phase ended. `?phase=N` reads one phase, `?phase=all`
pools every phase (the experiment's whole history, the rollups as they are). An experiment that never
changed its configs has one phase, and every reading of it is the same.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from abtest.analysis.results import ExperimentResults
from abtest.analysis.timeseries import ExperimentTimeseries
from abtest.errors import InvalidInput

ALL_PHASES = "all"


def chosen_phase(asked: str | None, current: int) -> int | None:
    """The phase a read analyses: the current one by default, N, or None for all pooled."""
    if asked is None:
        return current
    if asked == ALL_PHASES:
        return None
    if not asked.isdigit() or not 1 <= int(asked) <= current:
        raise InvalidInput(f"phase: give a phase from 1 to {current}, or all", field="phase")
    return int(asked)


class PhaseBoundary(BaseModel):
    phase: int
    started_at: datetime | None


class PhaseLabel(BaseModel):
    """Which phase the numbers describe."""

    phase: int | str = Field(description="The phase analysed, or 'all' (every phase pooled)")
    current_phase: int
    label: str = Field(description="e.g. 'phase 2 of 2 (latest)' or 'all 3 phases pooled'")
    started_at: datetime | None = Field(default=None, description="When the phase analysed started")
    ended_at: datetime | None = Field(default=None, description="When it ended (null: it is current)")
    config_invalid_exposures: dict[str, int] = Field(
        default_factory=dict,
        description="Per variant, exposures served control's config because the variant's failed its "
        "surface's schema (reason config_invalid); still analysed in the variant (intent to treat)",
    )


def label(phase: int | None, current: int) -> str:
    if phase is None:
        return f"all {current} phases pooled" if current > 1 else "all phases (only one)"
    return f"phase {phase} of {current}" + (" (latest)" if phase == current else "")


class PhasedResults(ExperimentResults):
    """Results of one phase, or of all pooled, labelled."""

    phase: PhaseLabel


class PhasedTimeseries(ExperimentTimeseries):
    """A time series with the phase boundaries marked (each phase's start)."""

    phases: list[PhaseBoundary] = Field(default_factory=list)


def with_phase_banner(page: str, phase: PhaseLabel) -> str:
    """The report page with a line after its title saying which phase its results describe, and how many
    exposures were served control's config because their variant's failed the schema."""
    from html import escape

    fallbacks = sum(phase.config_invalid_exposures.values())
    text = f"Results: {phase.label}."
    if phase.current_phase > 1:
        text += " Other phases: ?phase=N, or ?phase=all for every phase pooled; the charts pool every phase."
    if fallbacks:
        per = ", ".join(f"{name} {n}" for name, n in sorted(phase.config_invalid_exposures.items()))
        text += f" Exposures served control's config (config_invalid): {fallbacks} ({per})."
    banner = f'\n  <p class="phase" id="phase">{escape(text)}</p>'
    head, marker, tail = page.partition("</h1>")
    return head + marker + banner + tail if marker else page


def pooled(phase: PhaseLabel) -> PhaseLabel:
    """The label of an analysis that spans every phase whatever was asked (a bandit's period-weighted
    estimate: its periods, not the phases, split it)."""
    return phase.model_copy(
        update={
            "phase": ALL_PHASES,
            "label": label(None, phase.current_phase),
            "started_at": None,
            "ended_at": None,
        }
    )
