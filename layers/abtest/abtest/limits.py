"""Every limit of the service, in one table, and the checks every client JSON value passes.

A limit is defined here once and imported where it applies (models, the body parser, repositories),
so the number a client reads in a 4xx message, the one a model enforces and the one the docs name
are the same. The one exception is the assignment contract (`abtest.contract`), which SDK authors
reproduce on its own: its bounds (such as MAX_HOLDOUT_PERCENT) stay with it.

Pure: the standard library and pydantic only.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AfterValidator

# --- Request bodies (abtest.http.body parses every body before routing) -----------------------------
# Far below API Gateway's 10 MB: the largest valid body (a batch of 1,000 events) fits in it.
MAX_BODY_BYTES = 1_048_576
# Whole-body nesting; every client JSON value inside a body has its own, smaller limit (MAX_JSON_DEPTH).
MAX_BODY_DEPTH = 64
# Validation problems listed in a 422 (`error_count` gives the total): a body with 200,000 unknown
# keys must not get a 12 MB answer. Targeting conditions list their problems under the same cap.
MAX_ERRORS = 20

# --- Client JSON values (variant config, context, metadata, attributes) ----------------------------
# Nesting depth, integers a double represents exactly (JavaScript SDKs read larger ones wrongly),
# finite numbers only, and text PostgreSQL can store (no NUL, no lone surrogates).
MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER = 2**53
MAX_CONFIG_BYTES = 16_384  # a variant's config, compact JSON
MAX_CONTEXT_BYTES = 4096  # an exposure's context, a conversion's metadata, a user's attributes

# --- Identifiers -------------------------------------------------------------------------------------
MAX_USER_ID_LENGTH = 256  # characters of a user id, in a body or (decoded) in a path

# --- Experiments -------------------------------------------------------------------------------------
MAX_VARIANTS = 20
# Distinct metric names per experiment: bounds the size of /metrics and /results.
MAX_METRICS_PER_EXPERIMENT = 100
# Experiments per listing page also stop at this many bytes of JSON (at least one per page), so no
# listing can exceed Lambda's 6 MB response limit however large the configs are.
MAX_PAGE_BYTES = 2_000_000
# Items per page of a listing (experiments, holdouts, audit entries); surfaces, each with its experiments
# and namespace, come fewer per page. A cursor is opaque text of at most this many characters.
MAX_PAGE_SIZE = 100
MAX_SURFACES_PAGE_SIZE = 50
MAX_CURSOR_LENGTH = 512
MAX_OVERRIDES_PER_EXPERIMENT = 1000

# Below this a weight or a traffic share enrolls practically no one (5e-324 was accepted): a mistake.
# Each weight is at least MIN_SHARE; traffic_allocation is 0 (off) or at least MIN_SHARE.
MIN_SHARE = 0.001

# --- Decision frameworks (custom rules in GrowthBook's shape, abtest.domain.decisions) ----------------
MAX_DECISION_RULES = 20
MAX_DECISION_CONDITIONS = 10  # conditions in one rule
# Metric roles of one experiment (issue 22): each is analysed for every treatment in /results.
MAX_GOALS = 10
MAX_GUARDRAILS = 10
MAX_SECONDARY_METRICS = 20
MAX_WINDOW_HOURS = 24 * 365  # a metric definition's conversion window
# Per-user values a quantile metric reads at request time (one sort per variant, about 8 bytes a user
# as a float array plus the driver's rows while reading): above this the metric reports too_many_users.
MAX_QUANTILE_USERS = 1_000_000

# --- Targeting conditions (write time; evaluation applies the regex length cap too) ------------------
MAX_CONDITION_DEPTH = 10  # nested JSON objects and arrays, the condition itself being level 1
MAX_CONDITION_BYTES = 16_384  # compact UTF-8 JSON
MAX_REGEX_LENGTH = 256  # characters of a pattern

# --- Config schemas of surfaces (abtest.domain.config_schemas) and config phases ----------------------
MAX_SCHEMA_BYTES = 65_536  # a schema as compact JSON, its invariants included
MAX_SCHEMA_DEPTH = 32  # nested JSON objects and arrays of a schema
# Subschemas one instance location can be checked against through $ref and the in-place applicators
# (allOf, anyOf, oneOf, not, if/then/else, dependentSchemas): a chain of refs doubling at each step
# would otherwise make validation exponential.
MAX_SCHEMA_EXPANSION = 1000
MAX_INVARIANTS = 20  # cross-field conditions beside a schema
MAX_PHASES = 100  # config phases of one experiment (each a new config version of some variants)

# --- Saved groups --------------------------------------------------------------------------------
MAX_GROUP_VALUES = 10_000
MAX_GROUP_VALUE_LENGTH = 256
MAX_GROUP_BYTES = 262_144  # compact JSON of the values

# --- Holdouts (the held-out share itself is the contract's MAX_HOLDOUT_PERCENT) ----------------------
MAX_HOLDOUT_SURFACES = 100

# --- Events ------------------------------------------------------------------------------------------
MAX_BATCH_EVENTS = 1000
# A conversion's |value| bound: a per-user total of n events is at most n * 1e9, its square
# n^2 * 1e18, so sums and sums of squares stay far below a double's 1.8e308 for any event count.
MAX_CONVERSION_VALUE = 1e9
# Client clocks drift; an event stamped further in the future than this is refused.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Older than any experiment this service can have run (and clear of PostgreSQL's BC dates).
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)

# --- Reads -------------------------------------------------------------------------------------------
# Points of a time series (abtest.analysis.timeseries): daily, then weekly, the period doubling until the
# series fits, so a year of 20 variants stays far below Lambda's 6 MB response limit.
MAX_SERIES_POINTS = 200

# --- Audit log -----------------------------------------------------------------------------------
MAX_AUDIT_ID_LENGTH = 256  # ids in an entry (actor, entity, parent), as text; a longer actor id is cut
MAX_REASON_LENGTH = 1000  # the X-Change-Reason header

# --- Webhooks ----------------------------------------------------------------------------------------
MAX_WEBHOOK_URL_LENGTH = 2048  # characters of a webhook URL
# What a delivery keeps of the receiver's answer for the delivery log; the rest is not read.
MAX_WEBHOOK_RESPONSE_BYTES = 4096
MAX_WEBHOOKS = 100  # subscriptions in all: every alert fans out to each
MAX_WEBHOOK_DESCRIPTION_LENGTH = 500
MAX_DELIVERY_ERROR_LENGTH = 500  # characters of a failed attempt's error kept in the delivery log
MAX_RELAY_BATCH = 500  # outbox rows and due messages one relay tick hands on (the rest: next tick)
MAX_DIGEST_EXPERIMENTS = 100  # running experiments a digest lists (the most recently started first)
MAX_DIGEST_ALERTS = 50  # alerts of the period a digest lists (all are counted)

# --- Bandits (docs/bandits.md) ------------------------------------------------------------------------
MAX_BANDIT_PERIOD_HOURS = 8784  # a bandit's period: at most a (leap) year
MAX_BANDIT_MIN_USERS = 1_000_000_000  # min_users_per_arm
# Periods one bandit may close: /results, the report and a reweight read every period's statistics
# (periods x arms x metrics rows), so their number is bounded; 500 daily periods are well over a year.
MAX_BANDIT_PERIODS = 500

# --- Deployment --------------------------------------------------------------------------------------
# The failure reason the migrate custom resource sends CloudFormation is cut to this many characters
# (CloudFormation refuses responses over 4 KB).
MAX_FAILURE_REASON_LENGTH = 1000


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


def json_value(what: str) -> AfterValidator:
    """The one validator of client JSON objects (config, context, metadata): `json_problem` limits."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        problem = json_problem(value)
        if problem is not None:
            where, message = problem
            raise ValueError(f"{what}.{where}: {message}" if where else f"{what}: {message}")
        return value

    return AfterValidator(check)


def json_size_limit(what: str, limit: int) -> AfterValidator:
    """A validator refusing JSON objects larger than `limit` bytes once serialised."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
        if size > limit:
            raise ValueError(f"{what} is {size} bytes as JSON; the limit is {limit}")
        return value

    return AfterValidator(check)


def storable_text(value: str) -> str:
    """A validator of client text: `text_problem` as a ValueError.

    json.loads accepts lone surrogates ("\\ud800") and NUL ("\\u0000"): neither can be hashed
    reproducibly nor stored in a PostgreSQL text column.
    """
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# --- Breakdowns and stratified assignment (docs/breakdowns-and-strata.md) ---------------------------
MAX_DIMENSIONS = 5  # attribute paths an experiment breaks its results down by
MAX_DIMENSION_PATH_LENGTH = 128  # characters of one path
MAX_DIMENSION_VALUE_LENGTH = 64  # characters kept of a captured value (longer ones are cut)
MAX_DIMENSION_VALUES = 1000  # distinct values captured per dimension; later new values become "(other)"
MAX_BREAKDOWN_SLICES = 20  # slices of a breakdown by users; the rest are folded into "(other)"
MAX_BREAKDOWN_METRICS = 10  # metrics in one breakdown answer (`metric=` picks one)
# Comparisons (slices x metrics x treatments) in one breakdown answer: with many variants, fewer
# metrics (at least one), so the answer's size and time stay bounded.
MAX_BREAKDOWN_COMPARISONS = 420
MAX_BLOCK_SIZE = 20  # variants per permuted block of a stratified experiment

# Buffered ingestion (abtest.ingest): one queue message holds at most this many bytes of JSON (SQS takes
# 256 KiB per message and per SendMessageBatch call; the margin is for the envelope), and the outcome of
# each queued event stays readable this long.
MAX_QUEUE_MESSAGE_BYTES = 240_000
INGEST_OUTCOME_RETENTION_DAYS = 7
