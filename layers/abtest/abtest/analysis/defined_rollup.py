"""Defined metrics kept by the rollup: per-user values of metric definitions folded into per-variant sums
(pure; no SQL).

A definition is *kept* (its statistics live in the rollup, beside the event metrics') when its per-user
value depends on that user's own events only: a proportion, mean or ratio with an absolute cap, a
conversion window, or both, and every ratio (the per-user cross product x·y, which the event metrics'
sums cannot give). A percentile cap depends on every user's total and a quantile on the whole
distribution, so both are computed when results are read; a proportion or mean with neither cap nor
window is the event metric's own statistics and needs nothing more.

A user's stored state per kept definition is `UserDefined`: the counted conversions of its metric x (at
or after the first exposure and, with a window, at most `window_hours` after it), x's total before the
cap, and for a ratio the denominator's total y. Only exposed users have one. `fold_defined` turns
"stored -> recomputed" into per-variant deltas, as abtest.analysis.rollup.fold does for event metrics,
so the rollup and the reads of the tail agree and folding a user twice is harmless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from abtest.domain.metric_definitions import DefinedMetricData, MetricDefinitionBody

if TYPE_CHECKING:
    from abtest.analysis.rollup import VariantMetrics

UserDefinedKey = tuple[str, str]  # (user_id, definition name), within one experiment
DefinedKey = tuple[UUID, str]  # (variant_id, definition name)


@dataclass(frozen=True)
class KeptDefinition:
    """What the rollup needs of a kept definition (see the module docstring)."""

    name: str
    type: Literal["proportion", "mean", "ratio"]
    x_metric: str
    y_metric: str | None  # a ratio's denominator
    window_seconds: float | None
    cap: float | None  # absolute, on x

    @classmethod
    def of(cls, name: str, body: MetricDefinitionBody) -> KeptDefinition | None:
        """The definition as the rollup keeps it, or None when it is not kept."""
        if body.type == "quantile":
            return None
        if body.capping is not None and body.capping.type != "absolute":
            return None
        if body.type != "ratio" and body.capping is None and body.window_hours is None:
            return None
        metrics = body.event_metrics(name)
        return cls(
            name=name,
            type=body.type,
            x_metric=metrics[0],
            y_metric=metrics[1] if body.type == "ratio" else None,
            window_seconds=body.window_hours * 3600.0 if body.window_hours is not None else None,
            cap=body.capping.value if body.capping is not None else None,
        )

    def values(self, user: UserDefined) -> tuple[float, float]:
        """The user's analysed values (x after the cap, or 1/0 for a proportion; y for a ratio)."""
        if self.type == "proportion":
            return (1.0 if user.count > 0 else 0.0), 0.0
        x = min(user.x, self.cap) if self.cap is not None else user.x
        return x, (user.y if self.type == "ratio" else 0.0)


@dataclass(frozen=True)
class UserDefined:
    variant_id: UUID
    count: int = 0
    x: float = 0.0
    y: float = 0.0


@dataclass
class DefinedStats:
    """Per variant and kept definition, over exposed users: counted conversions of x, users with one, and
    the sums of the analysed per-user values."""

    count: int = 0
    users: int = 0
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_xy: float = 0.0

    def add(self, other: DefinedStats, sign: int = 1) -> None:
        self.count += sign * other.count
        self.users += sign * other.users
        self.sum_x += sign * other.sum_x
        self.sum_x2 += sign * other.sum_x2
        self.sum_y += sign * other.sum_y
        self.sum_y2 += sign * other.sum_y2
        self.sum_xy += sign * other.sum_xy

    def copy(self) -> DefinedStats:
        return DefinedStats(**vars(self))

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.sum_x, self.sum_x2, self.sum_y, self.sum_y2, self.sum_xy))

    @classmethod
    def of_user(cls, definition: KeptDefinition, user: UserDefined) -> DefinedStats:
        x, y = definition.values(user)
        return cls(user.count, int(user.count > 0), x, x * x, y, y * y, x * y)


@dataclass
class DefinedFold:
    """New per-user rows to store (and stored ones to remove), and per-variant deltas."""

    users: dict[UserDefinedKey, UserDefined] = field(default_factory=dict)
    removed: list[UserDefinedKey] = field(default_factory=list)
    deltas: dict[DefinedKey, DefinedStats] = field(default_factory=dict)


class DefinedFoldError(ArithmeticError):
    """A defined metric's sums are not representable (non-finite); nothing of the experiment is stored."""


def fold_defined(
    definitions: Mapping[str, KeptDefinition],
    users: set[str],
    old: Mapping[UserDefinedKey, UserDefined],
    new: Mapping[UserDefinedKey, UserDefined],
    *,
    check_finite: bool = True,
) -> DefinedFold:
    """Replace the stored rows of the recomputed `users` (user ids) by their recomputed ones. `old` holds
    what is stored for them, `new` what they hold now (no row: all zero, or not exposed)."""
    result = DefinedFold()
    for key, row in old.items():
        if key[0] not in users or key[1] not in definitions:
            continue
        _delta(result, definitions[key[1]], row, -1)
        if key not in new:
            result.removed.append(key)
    for key, row in new.items():
        if key[1] not in definitions:
            continue
        result.users[key] = row
        _delta(result, definitions[key[1]], row, +1)
    if check_finite and not all(d.finite() for d in result.deltas.values()):
        raise DefinedFoldError("a defined metric's sum is not a finite number")
    return result


def _delta(result: DefinedFold, definition: KeptDefinition, row: UserDefined, sign: int) -> None:
    delta = result.deltas.setdefault((row.variant_id, definition.name), DefinedStats())
    delta.add(DefinedStats.of_user(definition, row), sign)


def add_deltas(into: dict[UUID, dict[str, DefinedStats]], deltas: Mapping[DefinedKey, DefinedStats]) -> None:
    """Add per-variant deltas to statistics keyed by variant, then name (in place)."""
    for (variant_id, name), delta in deltas.items():
        into.setdefault(variant_id, {}).setdefault(name, DefinedStats()).add(delta)


def kept_data(stats: VariantMetrics, name: str, body: MetricDefinitionBody) -> DefinedMetricData:
    """A kept definition's per-variant data (in stored order) from statistics a rollup read filled:
    exposed users and the sums after window and cap (a proportion's sum_x counts its converted users)."""
    data = DefinedMetricData()
    for variant in stats.experiment.variants:
        kept = stats.defined.get(variant.id, {}).get(name, DefinedStats())
        totals = stats.variants.get(variant.id)
        data.users.append(totals.users if totals is not None else 0)
        data.sum_x.append(kept.sum_x)
        data.sum_x2.append(kept.sum_x2)
        data.sum_y.append(kept.sum_y)
        data.sum_y2.append(kept.sum_y2)
        data.sum_xy.append(kept.sum_xy)
    if body.capping is not None:
        data.cap = body.capping.value  # a kept definition's cap is absolute
    return data
