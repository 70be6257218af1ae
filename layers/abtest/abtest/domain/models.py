"""Pydantic models: what the API accepts and what the repository returns.

Validation rules that the database also enforces (names, weights, traffic) are checked here first so a
client gets an error naming the field instead of a constraint name.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from abtest.contract.bucketing import WEIGHT_SUM_TOLERANCE
from abtest.errors import InvalidInput
from abtest.field_path import field_path

MAX_VARIANTS = 20
MAX_CONFIG_BYTES = 16_384

# Limits on every client JSON value (variant config, context, metadata): nesting depth, integers a
# double represents exactly (JavaScript SDKs read larger ones wrongly), finite numbers only, and text
# PostgreSQL can store (no NUL, no lone surrogates). See the README's "Limits".
MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER = 2**53
# A conversion's |value| bound: a per-user total of n events is at most n * 1e9, its square
# n^2 * 1e18, so sums and sums of squares stay far below a double's 1.8e308 for any event count.
MAX_CONVERSION_VALUE = 1e9
# Distinct metric names per experiment: bounds the size of /metrics and /results.
MAX_METRICS_PER_EXPERIMENT = 100
# Experiments per listing page also stop at this many bytes of JSON (at least one per page).
MAX_PAGE_BYTES = 2_000_000

# Names end up in tags like "experiment_name:variant_name", so neither may contain ':' or spaces.
EXPERIMENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VARIANT_NAME_PATTERN = EXPERIMENT_NAME_PATTERN
SURFACE_PATTERN = r"^[a-z][a-z0-9_.-]*$"
RECOMMENDATIONS_SURFACE = "recommendations"


class Status(StrEnum):
    """Experiment lifecycle states (see abtest.domain.lifecycle for the transitions)."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"


def _json_size_limit(what: str, limit: int) -> AfterValidator:
    """A validator refusing JSON objects larger than `limit` bytes once serialised."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
        if size > limit:
            raise ValueError(f"{what} is {size} bytes as JSON; the limit is {limit}")
        return value

    return AfterValidator(check)


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored or hashed reproducibly, or None if it can."""
    if "\x00" in text:
        return "text must not contain NUL characters"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "text must be valid Unicode (no lone surrogates)"
    return None


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH, path: str = "") -> tuple[str, str] | None:
    """The first (field path, message) that breaks the JSON value limits, or None.

    Checked without recursion (a hostile value may be nested deeper than Python's stack): depth at
    most `max_depth` containers, integers within +-2^53, finite floats, text without NUL or lone
    surrogates (keys included). Paths read like `a.b[2].c`, relative to `path`.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return where, f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{where}.{key}" if where else str(key)
                    if isinstance(key, str) and (problem := text_problem(key)) is not None:
                        return where or "body", f"a key: {problem}"
                    stack.append((child, child_path, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_JSON_INTEGER:
                return where, f"integers must be within +-2^53 ({MAX_JSON_INTEGER}) to survive as a double"
        elif isinstance(item, float) and not math.isfinite(item):
            return where, "numbers must be finite"
        elif isinstance(item, str) and (problem := text_problem(item)) is not None:
            return where, problem
    return None


def _json_value(what: str) -> AfterValidator:
    """The one validator of client JSON objects (config, context, metadata): `json_problem` limits."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        problem = json_problem(value)
        if problem is not None:
            where, message = problem
            raise ValueError(f"{what}.{where}: {message}" if where else f"{what}: {message}")
        return value

    return AfterValidator(check)


ExperimentName = Annotated[str, Field(min_length=1, max_length=128, pattern=EXPERIMENT_NAME_PATTERN)]
VariantName = Annotated[str, Field(min_length=1, max_length=64, pattern=VARIANT_NAME_PATTERN)]
Description = Annotated[str, Field(max_length=2000)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
# Below this a weight or a traffic share enrolls practically no one (5e-324 was accepted): a mistake.
MIN_SHARE = 0.001


def _off_or_at_least_min(value: float) -> float:
    if 0 < value < MIN_SHARE:
        raise ValueError(f"must be 0 (off) or at least {MIN_SHARE}")
    return value


Weight = Annotated[float, Field(strict=True, ge=MIN_SHARE, le=1, allow_inf_nan=False)]
TrafficAllocation = Annotated[Fraction, AfterValidator(_off_or_at_least_min)]
# A share of a surface's namespace: at least one of its 10,000 buckets.
NamespaceShare = Annotated[
    float,
    Field(
        strict=True,
        ge=0.0001,
        le=1,
        allow_inf_nan=False,
        description="Share of the surface's namespace the experiment owns once started: "
        "round(share * 10000) of its 10,000 buckets",
    ),
]
Salt = Annotated[str, Field(min_length=1, max_length=128)]
Surface = Annotated[str, Field(min_length=1, max_length=64, pattern=SURFACE_PATTERN)]
# The JSON value check runs first: the size check serialises, which needs finite, shallow values.
Config = Annotated[dict[str, Any], _json_value("config"), _json_size_limit("config", MAX_CONFIG_BYTES)]
MAX_CONTEXT_BYTES = 4096


def _utf8(value: str) -> str:
    # json.loads accepts lone surrogates ("\ud800") and NUL ("\u0000"): neither can be hashed
    # reproducibly nor stored in a PostgreSQL text column.
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


UserId = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_utf8)]
Context = Annotated[dict[str, Any], _json_value("context"), _json_size_limit("context", MAX_CONTEXT_BYTES)]
Metadata = Annotated[dict[str, Any], _json_value("metadata"), _json_size_limit("metadata", MAX_CONTEXT_BYTES)]
# A user's attributes for targeting (README "Targeting"): the same limits as `context`.
Attributes = Annotated[
    dict[str, Any],
    _json_value("attributes"),
    _json_size_limit("attributes", MAX_CONTEXT_BYTES),
    Field(description="The user's attributes, matched against experiments' targeting at enrollment"),
]
# An experiment's targeting condition (GrowthBook's language; abtest.domain.targeting checks it, with
# its own depth and size limits, and names the path at fault).
Targeting = Annotated[
    dict[str, Any],
    _json_value("targeting"),
    Field(
        description="Who may be enrolled: a GrowthBook condition on the request's attributes ({} = everyone)"
    ),
]


class _Input(BaseModel):
    # Unknown fields are errors: a typo such as "traffic" must not be silently ignored.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class VariantIn(_Input):
    """A variant as submitted: its position in the list is its stored order."""

    name: VariantName
    weight: Weight
    config: Config = Field(default_factory=dict)
    description: Description = ""

    @field_validator("config", mode="before")
    @classmethod
    def _config_is_object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("config must be a JSON object")
        return value


def check_variants(variants: list[VariantIn]) -> list[VariantIn]:
    """At least two variants, unique names, weights summing to 1 (within 1e-9)."""
    if len(variants) < 2:
        raise ValueError("an experiment needs at least 2 variants")
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise ValueError(f"variant names must be unique; '{variant.name}' appears twice")
        seen.add(variant.name)
    total = math.fsum(variant.weight for variant in variants)
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"variant weights must sum to 1; they sum to {total!r}")
    return variants


Variants = Annotated[list[VariantIn], Field(max_length=MAX_VARIANTS), AfterValidator(check_variants)]


class ExperimentCreate(_Input):
    """Body of POST /api/v1/experiments."""

    name: ExperimentName
    description: Description = ""
    variants: Variants
    traffic_allocation: TrafficAllocation = 1.0
    salt: Salt | None = Field(
        default=None, description="Hash salt; defaults to the experiment id. Immutable."
    )
    surface: Surface = Field(
        default=RECOMMENDATIONS_SURFACE,
        description="Where the experiment runs; POST /recommendations serves the 'recommendations' surface.",
    )
    namespace_share: NamespaceShare = 1.0
    targeting: Targeting = Field(default_factory=dict)


class ExperimentPatch(_Input):
    """Body of PATCH /api/v1/experiments/{id}: only the fields given change."""

    name: ExperimentName | None = None
    description: Description | None = None
    variants: Variants | None = None
    traffic_allocation: TrafficAllocation | None = None
    surface: Surface | None = None
    namespace_share: NamespaceShare | None = None
    targeting: Targeting | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ExperimentPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        for field in self.model_fields_set:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields this patch sets, by name."""
        return {field: getattr(self, field) for field in self.model_fields_set}


class StatusChange(_Input):
    """Body of PUT /api/v1/experiments/{id}/status."""

    status: Status


class Variant(BaseModel):
    """A stored variant."""

    id: UUID
    name: str
    description: str
    weight: float
    config: dict[str, Any]
    position: int


class Experiment(BaseModel):
    """A stored experiment with its variants in stored order."""

    id: UUID
    name: str
    description: str
    status: Status
    traffic_allocation: float
    salt: str
    surface: str
    namespace_share: float = Field(
        default=1.0,
        description="Share of the surface's namespace asked for (held as buckets while running or paused)",
    )
    variants: list[Variant]
    targeting: dict[str, Any] = Field(
        default_factory=dict, description="Who may be enrolled (GrowthBook condition; {} = everyone)"
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class ExperimentPage(BaseModel):
    """One page of a listing; pass `next_cursor` back as `cursor` for the next page."""

    experiments: list[Experiment]
    next_cursor: str | None


class CatalogItem(BaseModel):
    """An item the built-in recommender ranks (see abtest.domain.recommender)."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    embedding: list[float]
    popularity: float = Field(description="Raw popularity; the recommender scales log1p of it to [0, 1]")


class RecommenderConfig(BaseModel):
    """Variant config keys of the built-in recommender (see abtest.domain.recommender); all optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_boost: float = Field(
        default=0.0,
        strict=True,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Weight of profile similarity against popularity (0 = popularity only)",
    )
    diversity: float = Field(
        default=0.0,
        strict=True,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="MMR trade-off (0 = pure relevance)",
    )
    candidate_cap: int = Field(
        default=200, strict=True, ge=1, le=10_000, description="How many top-scored items diversity re-ranks"
    )

    @classmethod
    def applying(cls, config: dict[str, Any]) -> RecommenderConfig:
        """The settings the recommender takes from any variant config: the keys it knows, each valid
        one as given, anything else at its default. Never raises: configs of other surfaces (such as
        `{"algo": "bm25"}`) are served with the defaults, after the user was already enrolled."""
        known: dict[str, Any] = {}
        for key in cls.model_fields:
            if key in config:
                try:
                    cls.model_validate({key: config[key]})
                except ValidationError:
                    continue
                known[key] = config[key]
        return cls.model_validate(known)


class _HasConfig(Protocol):
    config: dict[str, Any]


def check_definition(surface: str, variants: Sequence[_HasConfig]) -> None:
    """The one door for the rules that tie an experiment's variants to its surface, for a new experiment
    (lifecycle.check_create) and an edited draft (lifecycle.check_patch) alike.

    Variants of the recommendations surface must hold valid recommender configs; raises InvalidInput
    naming the offending key, e.g. `variants[1].config.lora_boost`.
    """
    check_variant_configs(surface, [variant.config for variant in variants])


def check_variant_configs(surface: str, configs: list[dict[str, Any]]) -> None:
    """Variant configs against the surface (see check_definition, the door every caller uses).

    Variants of the recommendations surface must hold valid recommender configs (strict JSON types:
    `true` or `"0.5"` is not a number). Each config is rewritten in place in its canonical types
    (`{"lora_boost": 1}` is stored as `{"lora_boost": 1.0}`), so SDKs read what the recommender uses.
    """
    if surface != RECOMMENDATIONS_SURFACE:
        return
    for index, config in enumerate(configs):
        try:
            canonical = RecommenderConfig.model_validate(config).model_dump(include=set(config))
            config.clear()
            config.update(canonical)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = field_path(("variants", index, "config", *problem["loc"]))
            message = problem["msg"]
            if problem["type"] == "extra_forbidden":
                allowed = ", ".join(RecommenderConfig.model_fields)
                message = f"unknown recommender setting; the recommendations surface accepts {allowed}"
            raise InvalidInput(f"{field}: {message}", field=field) from exc


METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_.]*$"
MAX_BATCH_EVENTS = 1000
# Client clocks drift; an event stamped further in the future than this is refused.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Older than any experiment this service can have run (and clear of PostgreSQL's BC dates).
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)

MetricName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=METRIC_NAME_PATTERN,
        description="Lower-case letters, digits, '_' and '.', starting with a letter",
    ),
]
EventId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_utf8)]
Value = Annotated[
    float,
    Field(
        strict=True,
        allow_inf_nan=False,
        ge=-MAX_CONVERSION_VALUE,
        le=MAX_CONVERSION_VALUE,
        description=f"A JSON number with |value| <= {MAX_CONVERSION_VALUE:.0e}",
    ),
]


def _event_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # no offset given: the API's times are UTC
        value = value.replace(tzinfo=UTC)
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("timestamp is in the future")
    if value < EARLIEST_EVENT:
        raise ValueError(f"timestamp is before {EARLIEST_EVENT.date().isoformat()}")
    return value


def _iso_text(value: Any) -> Any:
    # pydantic reads numbers as Unix times (1e12 even as milliseconds): refused, only ISO 8601 text.
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("timestamp must be an ISO 8601 string such as 2026-01-02T03:04:05Z")
    return value


Timestamp = Annotated[
    datetime | None,
    BeforeValidator(_iso_text),
    AfterValidator(_event_time),
    Field(description="When it happened (ISO 8601 text; UTC if no offset); default: when received"),
]


# json.dumps(sort_keys=True, separators=(",", ":"), allow_nan=False), built once: a batch hashes up to
# 1,000 events and json.dumps would build this encoder for each of them.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def event_payload_hash(
    user_id: str,
    timestamp: datetime | None,
    payload: dict[str, Any] | None,
    metric_name: str | None = None,
    value: float | None = None,
) -> str:
    """What an event_id stands for: a retry must send the same (same instant, same JSON, same value),
    or it is a different event under a used id. Equal for a conversion sent alone or in a batch."""
    canonical = _CANONICAL_JSON.encode(
        {
            "user_id": user_id,
            "timestamp": timestamp.astimezone(UTC).isoformat() if timestamp is not None else None,
            "payload": payload,
            "metric_name": metric_name,
            "value": float(value) if value is not None else None,
        }
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ConversionIn(_Input):
    """Body of POST /api/v1/experiments/conversions."""

    experiment_id: UUID
    user_id: UserId
    metric_name: MetricName
    value: Value = 1.0
    metadata: Metadata | None = None
    event_id: EventId | None = Field(
        default=None, description="Client id for idempotency: the same event_id is stored once"
    )
    timestamp: Timestamp = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.metadata, self.metric_name, self.value)


class ExposureEvent(_Input):
    """An exposure in a batch: the user saw their assigned variant."""

    type: Literal["exposure"]
    experiment_id: UUID
    user_id: UserId
    event_id: EventId
    timestamp: Timestamp = None
    context: Context | None = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.context)


class ConversionEvent(_Input):
    """A conversion in a batch."""

    type: Literal["conversion"]
    experiment_id: UUID
    user_id: UserId
    event_id: EventId
    metric_name: MetricName
    value: Value = 1.0
    timestamp: Timestamp = None
    metadata: Metadata | None = None

    def payload_hash(self) -> str:
        return event_payload_hash(self.user_id, self.timestamp, self.metadata, self.metric_name, self.value)


BatchEvent = Annotated[ExposureEvent | ConversionEvent, Field(discriminator="type")]


class EventBatch(_Input):
    """Body of POST /api/v1/events."""

    events: list[BatchEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class Conversion(BaseModel):
    """A stored conversion."""

    id: int
    experiment_id: UUID
    variant_id: UUID | None = Field(
        description="The user's variant; null for a holdout conversion (holdout_conversion true)"
    )
    user_id: str
    metric_name: str
    value: float
    event_id: str | None
    metadata: dict[str, Any] | None
    occurred_at: datetime
    received_at: datetime
    holdout_conversion: bool = Field(
        default=False,
        description="true: the user has no assignment and is a member of a running holdout covering the "
        "experiment's surface; stored for the holdout's results only",
    )


class EventResult(BaseModel):
    """What became of one event of a batch."""

    index: int
    event_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    error: str | None = None
    message: str | None = None


class BatchResult(BaseModel):
    """Answer to a batch: counts, and one result per event in the order sent."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


# Assignment and recommendation requests and answers (AssignmentsFunction).


class Reason(StrEnum):
    """Why a user is or is not in an experiment."""

    ASSIGNED = "assigned"  # enrolled: the stored (or just stored) variant
    EXCLUDED_BY_TRAFFIC = "excluded_by_traffic"  # in the experiment's share, outside its traffic
    NOT_IN_SHARE = "not_in_experiment_share"  # the user's namespace bucket is not the experiment's
    IN_OTHER_EXPERIMENT = "in_other_experiment"  # already a member of a sibling in the namespace
    NOT_RUNNING = "experiment_not_running"  # draft, paused or completed: untagged defaults
    NO_EXPERIMENT = "no_experiment"  # nothing is running or paused on the surface
    TARGETING_NOT_MET = "targeting_not_met"  # the user's attributes do not match the targeting
    DATABASE_UNAVAILABLE = "database_unavailable"  # served without the database (fail open)
    OVERRIDE = "override"  # forced by an override: served its variant, never stored as an assignment
    HOLDOUT = "holdout"  # held out by a running holdout covering the surface: defaults, never enrolled


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    limit: StrictInt = Field(default=10, ge=1, le=100)
    context: Context | None = None
    surface: Surface = RECOMMENDATIONS_SURFACE
    attributes: Attributes | None = None


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float
    experiment_variant: str | None = Field(description='"experiment_name:variant_name"; null if not enrolled')


class RecommendationResponse(BaseModel):
    user_id: str
    experiment_id: UUID | None = Field(description="The experiment the user is enrolled in, if any")
    experiment_variant: str | None
    reason: Reason = Field(description="Why the user is or is not in an experiment of the surface")
    source: Literal["assignment", "override"] | None = Field(
        default=None,
        description='Where the variant comes from: "assignment" (the stored assignment), "override" '
        "(a forced user: never stored, excluded from metrics and results); null when none is served",
    )
    recommendations: list[RecommendedItem]
    degraded: bool = Field(description="true when served without the database (untagged, popularity)")


class AssignmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    experiment_id: UUID
    context: Context | None = None
    record_exposure: StrictBool = True
    attributes: Attributes | None = None


class AssignedVariant(BaseModel):
    id: UUID
    name: str
    config: dict[str, Any]


class AssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    reason: Reason
    variant: AssignedVariant | None
    experiment_variant: str | None
    new_assignment: bool
    exposure_recorded: bool
    source: Literal["assignment", "override"] | None = Field(
        default=None,
        description='Where the variant comes from: "assignment" (the stored assignment), "override" '
        "(a forced user: never stored, excluded from metrics and results); null when none is served",
    )


class StoredAssignmentResponse(BaseModel):
    experiment_id: UUID
    experiment_name: str
    user_id: str
    enrolled: bool
    variant: AssignedVariant | None
    experiment_variant: str | None


# Surfaces and their namespaces (GET /surfaces...).

BucketRange = Annotated[tuple[int, int], Field(description="Half-open range [start, end) of buckets")]


class NamespaceMember(BaseModel):
    """An experiment of a surface and the buckets it holds."""

    experiment_id: UUID
    name: str
    status: Status
    namespace_share: float = Field(description="The share asked for")
    share: float = Field(description="The share held: buckets held / 10000 (0 for drafts and completed)")
    buckets: list[BucketRange]


class SurfaceNamespace(BaseModel):
    """One surface: its namespace salt, its experiments (not completed) and the free share."""

    surface: str
    salt: str | None = Field(description="The namespace salt; null until an experiment starts on the surface")
    total_buckets: int
    free_share: float
    free_buckets: int
    experiments: list[NamespaceMember]


class SurfaceList(BaseModel):
    """A page of surfaces by name; pass `next_cursor` back as `cursor` for the next page."""

    surfaces: list[SurfaceNamespace]
    next_cursor: str | None = None


class SurfaceAssignmentResponse(BaseModel):
    """Which experiment and variant of a surface a user is in, looked up without enrolling."""

    surface: str
    user_id: str
    bucket: int | None = Field(description="The user's namespace bucket; null without a namespace")
    bucket_owner: UUID | None = Field(description="The experiment owning that bucket (running or paused)")
    enrolled: bool = Field(description="true when the user has a variant in a running experiment")
    experiment_id: UUID | None = Field(description="The experiment the user belongs to (not completed)")
    experiment_name: str | None
    status: Status | None
    variant: AssignedVariant | None
    experiment_variant: str | None
