"""OpenFeature Remote Evaluation Protocol (OFREP 0.3.0): what its answers look like, and why.

A flag key is a surface; the evaluation runs the one decision pipeline (abtest.domain.serving). This
module turns a request body into the context the pipeline needs and an `Assignment` into an OFREP
answer. It never answers in the service's own error shape: every failure carries OFREP's `errorCode`
and `errorDetails` (the Python provider reads both).

Reasons (OpenFeature's resolution reasons, the 0.3.0 schema's enum):
- SPLIT: a hashed assignment (new or stored, sticky).
- TARGETING_MATCH: an override forced this user's variant.
- DISABLED: a running holdout covering the surface holds the user out; the code default applies.
- STATIC: the user is in no experiment of the surface (traffic, targeting, namespace share, another
  experiment of the namespace, nothing running): the code default applies, an answer without `value`
  (the protocol's ADR 0006). The ADR's example reason `DEFAULT` is not in the 0.3.0 enum; `STATIC` is
  the enum's "the value is not the result of a dynamic evaluation" reason, which is what the code
  default is for this user (the same answer for every evaluation until an experiment takes them).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from abtest.domain.assignment import Reason
from abtest.domain.served import Assignment
from abtest.http.body import BodyError, check_body, dumps, loads
from abtest.limits import MAX_CONTEXT_BYTES, MAX_USER_ID_LENGTH, json_problem, text_problem

OfrepReason = Literal["STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "UNKNOWN"]
OfrepErrorCode = Literal[
    "PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL", "FLAG_NOT_FOUND"
]

# Seconds an overloaded caller waits before retrying (the protocol's one overload answer is 429).
RETRY_AFTER_SECONDS = 1
# The reason of "use the code default" (see the module docstring).
CODE_DEFAULT_REASON: OfrepReason = "STATIC"

_REASONS: dict[Reason, OfrepReason] = {
    Reason.ASSIGNED: "SPLIT",
    Reason.OVERRIDE: "TARGETING_MATCH",
    Reason.HOLDOUT: "DISABLED",
}


@dataclass(frozen=True)
class Failure(Exception):
    """An OFREP error answer: HTTP status, OpenFeature error code, details."""

    status: int
    code: OfrepErrorCode
    details: str

    def body(self, key: str | None) -> dict[str, Any]:
        """The answer's JSON body (`key` is omitted on the bulk route, which has none)."""
        answer: dict[str, Any] = {"errorCode": self.code, "errorDetails": self.details}
        if key is not None:
            answer = {"key": key, **answer}
        return answer


@dataclass(frozen=True)
class EvaluationContext:
    """The evaluation context of a request: the user (targetingKey) and their targeting attributes."""

    user_id: str
    attributes: dict[str, Any]


def parse_context(event: dict[str, Any]) -> EvaluationContext:
    """The request's evaluation context; Failure (400) for a body that is not one.

    PARSE_ERROR: no body, not JSON, or larger than the body limit. INVALID_CONTEXT: not
    `{"context": {...}}`, or values past the JSON or context limits. TARGETING_KEY_MISSING: no
    `targetingKey` (or an empty one).
    """
    raw = event.get("body")
    if not raw:
        raise Failure(400, "PARSE_ERROR", 'a JSON request body {"context": {...}} is required')
    try:
        check_body(event)
    except BodyError as exc:
        # Not JSON, or too large: a parse error. JSON past the value limits (depth, integers beyond
        # +-2^53, NUL or lone surrogates in text): a context the service cannot take.
        raise Failure(400, "INVALID_CONTEXT" if exc.status == 422 else "PARSE_ERROR", exc.message) from None
    if event.get("isBase64Encoded"):
        raw = base64.b64decode(raw)  # check_body decoded it once already: valid base64
    body = loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("context"), dict):
        raise Failure(400, "INVALID_CONTEXT", "the body must be a JSON object with a 'context' object")
    unknown = sorted(set(body) - {"context"})
    if unknown:
        raise Failure(400, "INVALID_CONTEXT", f"unknown body field '{unknown[0]}' (only 'context')")
    context: dict[str, Any] = dict(body["context"])
    user_id = context.pop("targetingKey", None)
    if user_id is None or user_id == "":
        raise Failure(400, "TARGETING_KEY_MISSING", "context.targetingKey (the user id) is required")
    if not isinstance(user_id, str):
        raise Failure(400, "INVALID_CONTEXT", "context.targetingKey must be a string")
    if len(user_id) > MAX_USER_ID_LENGTH or (problem := text_problem(user_id)) is not None:
        problem = f"at most {MAX_USER_ID_LENGTH} characters" if len(user_id) > MAX_USER_ID_LENGTH else problem
        raise Failure(400, "INVALID_CONTEXT", f"context.targetingKey: {problem}")
    found = json_problem(context, path="context")
    if found is not None:
        raise Failure(400, "INVALID_CONTEXT", f"{found[0]}: {found[1]}")
    size = len(dumps(context).encode())
    if size > MAX_CONTEXT_BYTES:
        raise Failure(
            400, "INVALID_CONTEXT", f"context is {size} bytes as JSON; the limit is {MAX_CONTEXT_BYTES}"
        )
    return EvaluationContext(user_id, context)


def flag_not_found(surface: str) -> Failure:
    """The answer for a surface no namespace or experiment ever used."""
    return Failure(404, "FLAG_NOT_FOUND", f"no experiment ever used the surface '{surface}'")


def evaluation(surface: str, assignment: Assignment) -> dict[str, Any]:
    """The OFREP success answer for one surface: the variant's config, or "use the code default"."""
    experiment = assignment.experiment
    metadata: dict[str, Any] = {}
    if experiment is not None:
        metadata = {"experimentId": str(experiment.id), "experimentName": experiment.name}
    if assignment.served is not None and assignment.tag is not None:
        reason = _REASONS.get(assignment.reason, "SPLIT")
        metadata["configVersion"] = assignment.served.config_version
        if assignment.reason == Reason.CONFIG_INVALID:
            metadata["abtestReason"] = assignment.reason.value
        return {
            "key": surface,
            "value": assignment.served.config,
            "variant": assignment.tag,
            "reason": reason,
            "metadata": metadata,
        }
    reason = "DISABLED" if assignment.reason == Reason.HOLDOUT else CODE_DEFAULT_REASON
    # Why the code default applies, in the service's own words (not_in_experiment_share, ...).
    return {
        "key": surface,
        "reason": reason,
        "metadata": {**metadata, "abtestReason": assignment.reason.value},
    }


class EvaluationAnswer(BaseModel):
    """OFREP's evaluation success (documentation of the answer; the route builds it with `evaluation`)."""

    key: str = Field(description="The flag key: the surface")
    value: dict[str, Any] | None = Field(
        default=None, description="The served variant's config; absent: use the code default (ADR 0006)"
    )
    variant: str | None = Field(default=None, description="experiment_name:variant_name")
    reason: OfrepReason
    metadata: dict[str, str | bool | float] = Field(default_factory=dict)


class EvaluationFailure(BaseModel):
    """OFREP's evaluation failure (FLAG_NOT_FOUND on 404)."""

    key: str | None = None
    errorCode: OfrepErrorCode  # noqa: N815 - the protocol's field name
    errorDetails: str  # noqa: N815 - the protocol's field name


def failure_answer(status: int, code: OfrepErrorCode, details: str, key: str | None) -> dict[str, Any]:
    """A proxy (API Gateway) answer in OFREP's error shape."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": dumps(Failure(status, code, details).body(key)),
        "isBase64Encoded": False,
    }


class BulkAnswer(BaseModel):
    """OFREP's bulk evaluation success: one evaluation per surface with a running experiment."""

    flags: list[EvaluationAnswer]
    metadata: dict[str, str | bool | float] = Field(
        description="prefetch: true and exposuresRecorded: false (report exposures through the events route)"
    )


# What every bulk answer says about itself: it is a prefetch, and no exposure was recorded.
BULK_METADATA: dict[str, Any] = {"prefetch": True, "exposuresRecorded": False}


def bulk_evaluation(answers: Mapping[str, Assignment]) -> dict[str, Any]:
    """The bulk answer's body: the surfaces' evaluations in key order, and BULK_METADATA."""
    return {
        "flags": [evaluation(surface, answers[surface]) for surface in sorted(answers)],
        "metadata": dict(BULK_METADATA),
    }


def etag(body: Mapping[str, Any]) -> str:
    """A strong ETag derived from the answer: the same answer, the same tag."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f'"{digest[:32]}"'


def etag_matches(if_none_match: str | None, tag: str) -> bool:
    """True if an If-None-Match header names `tag` (weak or strong, in a list) or is `*`."""
    if not if_none_match:
        return False
    candidates = [c.strip() for c in if_none_match.split(",")]
    return any(c == "*" or c.removeprefix("W/") == tag for c in candidates)
