"""Metric definitions and the roles an experiment gives them (pure: no SQL, no HTTP).

A definition names the event metric(s) it reads (`metric`, or `numerator` and `denominator` for a
ratio) and says how to analyse them: `type` (proportion, mean, ratio, quantile), `direction` (which
way is better), optional `capping` (winsorize per-user totals) and `window_hours` (only conversions
within that many hours of the user's first exposure count). Definitions are versioned by the storage
layer; an experiment pins the versions in force when it starts.

An experiment's roles: `{"goals": [names], "guardrails": [{"name", "margin"}], "secondary": [names]}`,
each name a definition. Goals and guardrails are fixed once the experiment has started; secondary
metrics may be added (`check_roles_change`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from abtest.domain.audit import Actor, AuditEntry, snapshot
from abtest.domain.fields import StrictInput
from abtest.errors import Conflict, ErrorCode, InvalidInput
from abtest.limits import MAX_GOALS, MAX_GUARDRAILS, MAX_SECONDARY_METRICS, MAX_WINDOW_HOURS

if TYPE_CHECKING:
    from abtest.domain.experiments import Experiment

__all__ = [
    "METRIC_NAME_PATTERN",
    "TOO_MANY_USERS_ERROR",
    "Capping",
    "DefinedMetricData",
    "Guardrail",
    "MetricDefinition",
    "MetricDefinitionBody",
    "MetricDefinitionIn",
    "MetricDefinitionPut",
    "MetricDefinitionWrite",
    "MetricRoles",
    "PinnedBy",
    "RoleInputs",
    "check_roles_change",
    "definition_created",
    "definition_deleted",
    "definition_updated",
]

# The event metric names conversions carry (the conversions table's check), so a definition can share
# its metric's name.
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"

MetricName = Annotated[str, Field(min_length=1, max_length=64, pattern=METRIC_NAME_PATTERN)]
MetricType = Literal["proportion", "mean", "ratio", "quantile"]
Direction = Literal["higher", "lower"]


class Capping(StrictInput):
    """`{"type": "absolute" | "percentile", "value": x, "ignore_zeros": false}` (abtest.stats.capping's
    shape; its own model here: the experiments function must not load the statistics engine)."""

    type: Literal["absolute", "percentile"]
    value: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    ignore_zeros: bool = False

    @model_validator(mode="after")
    def _percentile_below_one(self) -> Capping:
        if self.type == "percentile" and not self.value < 1.0:
            raise ValueError("a percentile cap's value is a fraction in (0, 1), e.g. 0.99")
        return self


class MetricDefinitionBody(StrictInput):
    """What a definition says (the body of PUT, and of POST with its name)."""

    type: MetricType = Field(
        description="proportion: converted at least once; mean: per-user total; ratio: per-user numerator "
        "over per-user denominator (delta method); quantile: the `quantile` of per-user totals"
    )
    direction: Direction = Field(default="higher", description="Which way is better")
    metric: MetricName | None = Field(
        default=None,
        validation_alias=AliasChoices("metric", "metric_name"),
        description="The event metric read (conversions' metric_name); defaults to the definition's "
        "name. Not for ratios.",
    )
    numerator: MetricName | None = Field(
        default=None,
        validation_alias=AliasChoices("numerator", "numerator_metric"),
        description="Ratio only: the numerator's event metric",
    )
    denominator: MetricName | None = Field(
        default=None,
        validation_alias=AliasChoices("denominator", "denominator_metric"),
        description="Ratio only: the denominator's event metric",
    )
    quantile: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = Field(
        default=None, description="Quantile only: which one, e.g. 0.9 for p90"
    )
    ignore_zeros: bool = Field(default=False, description="Quantile only: leave out users whose total is 0")
    capping: Capping | None = Field(
        default=None,
        description='Winsorize per-user totals: {"type": "absolute", "value": cap} or {"type": '
        '"percentile", "value": 0.99} (pooled over variants)',
    )
    window_hours: Annotated[float, Field(gt=0, le=MAX_WINDOW_HOURS, allow_inf_nan=False)] | None = Field(
        default=None, description="Only conversions within this many hours of the user's first exposure count"
    )
    description: Annotated[str, Field(max_length=1000)] = ""

    @model_validator(mode="after")
    def _consistent(self) -> MetricDefinitionBody:
        if self.type == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("a ratio needs numerator and denominator (event metric names)")
            if self.metric is not None:
                raise ValueError("a ratio reads numerator and denominator, not metric")
        elif self.numerator is not None or self.denominator is not None:
            raise ValueError("numerator and denominator are for ratios only")
        if self.type == "quantile" and self.quantile is None:
            raise ValueError("a quantile needs quantile, e.g. 0.9 for p90")
        if self.type != "quantile" and (self.quantile is not None or self.ignore_zeros):
            raise ValueError("quantile and ignore_zeros are for quantile metrics only")
        if self.type == "proportion" and self.capping is not None:
            raise ValueError("a proportion (0 or 1 per user) cannot be capped")
        return self

    def event_metrics(self, name: str) -> list[str]:
        """The event metrics the definition reads (a definition named `name`)."""
        if self.type == "ratio":
            assert self.numerator is not None
            assert self.denominator is not None
            return [self.numerator, self.denominator]
        return [self.metric or name]


class MetricDefinitionIn(MetricDefinitionBody):
    """Body of POST /api/v1/metric-definitions."""

    name: MetricName = Field(description="The definition's name, as experiments' roles name it")


class MetricDefinitionPut(MetricDefinitionBody):
    """Body of PUT /api/v1/metric-definitions/{name}: what the definition says (a `name`, if given, must
    be the path's: a definition is not renamed)."""

    name: MetricName | None = None

    def body(self, name: str) -> MetricDefinitionBody:
        """What it says, for the definition `name`; 422 naming `name` when it names another."""
        if self.name is not None and self.name != name:
            raise InvalidInput(
                f"name: {self.name!r} is not the path's {name!r} (a definition is not renamed)", field="name"
            )
        return MetricDefinitionBody.model_validate(self.model_dump(exclude={"name"}))


class MetricDefinition(MetricDefinitionBody):
    """A stored definition at one version: its name, version and what it says."""

    name: str
    version: int = Field(description="Starts at 1; every PUT adds one")
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def definition(self) -> MetricDefinitionBody:
        """What it says, without name, version and times."""
        return MetricDefinitionBody.model_validate(
            self.model_dump(include=set(MetricDefinitionBody.model_fields))
        )

    @classmethod
    def stored(cls, row: dict[str, Any]) -> MetricDefinition:
        """From a row with name, version, definition (the body as JSON), created_at, updated_at."""
        return cls.model_validate(
            {
                **row["definition"],
                "name": row["name"],
                "version": row["version"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
            }
        )


class PinnedBy(BaseModel):
    """An experiment that keeps the version it pinned when it started."""

    experiment_id: str
    experiment_name: str
    status: str
    version: int


class MetricDefinitionWrite(MetricDefinition):
    """The answer of PUT: the new version, and the experiments that keep an older pinned one."""

    pinned_by: list[PinnedBy] = Field(
        default_factory=list,
        description="Experiments that started before this edit: they keep analysing their pinned version",
    )


class Guardrail(StrictInput):
    name: MetricName
    margin: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = Field(
        description="Relative: 0.02 = the treatment may be at most 2% worse than control (bad direction)"
    )


class MetricRoles(StrictInput):
    """`"metrics"` of an experiment: definitions by role."""

    goals: Annotated[list[MetricName], Field(max_length=MAX_GOALS)] = Field(default_factory=list)
    guardrails: Annotated[list[Guardrail], Field(max_length=MAX_GUARDRAILS)] = Field(default_factory=list)
    secondary: Annotated[list[MetricName], Field(max_length=MAX_SECONDARY_METRICS)] = Field(
        default_factory=list
    )

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _each_once(self) -> MetricRoles:
        seen: set[str] = set()
        for name in self.names():
            if name in seen:
                raise ValueError(f"metric {name!r} has more than one role (each definition takes one)")
            seen.add(name)
        return self

    def names(self) -> list[str]:
        """Every definition named, goals first, then guardrails, then secondary."""
        return [*self.goals, *(g.name for g in self.guardrails), *self.secondary]

    def paths(self) -> Iterable[tuple[str, str]]:
        """(field path, name) of every definition named, for errors."""
        for i, name in enumerate(self.goals):
            yield f"metrics.goals[{i}]", name
        for i, guardrail in enumerate(self.guardrails):
            yield f"metrics.guardrails[{i}].name", guardrail.name
        for i, name in enumerate(self.secondary):
            yield f"metrics.secondary[{i}]", name


def check_roles_change(current: dict[str, Any] | None, new: MetricRoles) -> None:
    """Once an experiment has started: goals and guardrails stay as they are, secondary metrics may only
    be added (409 field_frozen naming the field)."""
    before = MetricRoles.model_validate(current or {})
    if new.goals != before.goals:
        raise Conflict(
            "goals cannot change once an experiment has started",
            code=ErrorCode.FIELD_FROZEN,
            field="metrics.goals",
        )
    if new.guardrails != before.guardrails:
        raise Conflict(
            "guardrails (and their margins) cannot change once an experiment has started",
            code=ErrorCode.FIELD_FROZEN,
            field="metrics.guardrails",
        )
    missing = [name for name in before.secondary if name not in new.secondary]
    if missing:
        raise Conflict(
            f"secondary metrics may only be added once an experiment has started ({', '.join(missing)} "
            "would be removed)",
            code=ErrorCode.FIELD_FROZEN,
            field="metrics.secondary",
        )


TOO_MANY_USERS_ERROR = "too_many_users"  # a quantile over more users than MAX_QUANTILE_USERS


@dataclass
class DefinedMetricData:
    """One defined metric of one experiment, per variant in stored order (after window and capping).

    `users`: exposed users; `sum_x`/`sum_x2` the per-user totals (a proportion: converted users, twice);
    `sum_y`/`sum_y2`/`sum_xy` the denominator of a ratio; `values` the per-user totals of a quantile;
    `cap` / `denominator_cap` the caps applied (None: none); `error` when it cannot be computed.
    """

    users: list[int] = field(default_factory=list)
    sum_x: list[float] = field(default_factory=list)
    sum_x2: list[float] = field(default_factory=list)
    sum_y: list[float] = field(default_factory=list)
    sum_y2: list[float] = field(default_factory=list)
    sum_xy: list[float] = field(default_factory=list)
    values: list[list[float]] | None = None
    cap: float | None = None
    error: str | None = None


@dataclass
class RoleInputs:
    """An experiment with roles, the definition (pinned or current version) of each metric it names, and
    each one's data."""

    experiment: Experiment
    roles: MetricRoles
    definitions: dict[str, MetricDefinition]
    data: dict[str, DefinedMetricData]


# --- Audit entries ------------------------------------------------------------------------------------


def _snapshot(definition: MetricDefinition) -> dict[str, Any]:
    return snapshot(definition, exclude={"created_at", "updated_at"})


def definition_created(actor: Actor, definition: MetricDefinition) -> AuditEntry:
    """metric_definition.create, with the definition as after."""
    return AuditEntry(
        actor=actor,
        action="metric_definition.create",
        entity_type="metric_definition",
        entity_id=definition.name,
        after=_snapshot(definition),
    )


def definition_updated(actor: Actor, before: MetricDefinition, after: MetricDefinition) -> AuditEntry:
    """metric_definition.update: the old version as before, the new one as after."""
    return AuditEntry(
        actor=actor,
        action="metric_definition.update",
        entity_type="metric_definition",
        entity_id=after.name,
        before=_snapshot(before),
        after=_snapshot(after),
    )


def definition_deleted(actor: Actor, definition: MetricDefinition) -> AuditEntry:
    """metric_definition.delete, with the deleted definition as before."""
    return AuditEntry(
        actor=actor,
        action="metric_definition.delete",
        entity_type="metric_definition",
        entity_id=definition.name,
        before=_snapshot(definition),
    )
