"""OFREP mapping: the pipeline's reasons as OpenFeature reasons, and the request errors' codes."""

from __future__ import annotations

import base64
import json
from typing import Any
from uuid import uuid4

import pytest

from abtest.domain.assignment import Reason
from abtest.domain.experiments import Variant
from abtest.domain.served import Assignment
from abtest.http.ofrep import CODE_DEFAULT_REASON, EvaluationContext, Failure, evaluation, parse_context


class _Experiment:
    def __init__(self) -> None:
        self.id = uuid4()
        self.name = "recs_test"


def _assignment(reason: Reason, variant: str | None) -> Assignment:
    experiment: Any = _Experiment()
    served = None
    if variant is not None:
        served = Variant(
            id=uuid4(), name=variant, description="", weight=0.5, config={"lora_boost": 0.5}, position=1
        )
    return Assignment(experiment, reason, served)


@pytest.mark.parametrize(
    ("reason", "variant", "expected"),
    [(Reason.ASSIGNED, "treatment", "SPLIT"), (Reason.OVERRIDE, "treatment", "TARGETING_MATCH")],
)
def test_a_served_variant_is_its_config_and_tag(reason: Reason, variant: str, expected: str) -> None:
    assignment = _assignment(reason, variant)
    answer = evaluation("recs", assignment)
    assert answer["value"] == {"lora_boost": 0.5}
    assert answer["variant"] == "recs_test:treatment"
    assert answer["reason"] == expected
    assert answer["metadata"]["experimentName"] == "recs_test"


@pytest.mark.parametrize("reason", [r for r in Reason if r not in (Reason.ASSIGNED, Reason.OVERRIDE)])
def test_no_variant_is_the_code_default(reason: Reason) -> None:
    answer = evaluation("recs", _assignment(reason, None))
    assert "value" not in answer
    assert "variant" not in answer
    assert answer["reason"] == ("DISABLED" if reason == Reason.HOLDOUT else CODE_DEFAULT_REASON)
    assert answer["metadata"]["abtestReason"] == reason.value


def _event(body: Any, *, encode: bool = False) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    if encode:
        return {"body": base64.b64encode(text.encode()).decode(), "isBase64Encoded": True}
    return {"body": text}


def test_the_context_is_the_user_and_their_attributes() -> None:
    parsed = parse_context(_event({"context": {"targetingKey": "u1", "country": "CA", "plan": "pro"}}))
    assert parsed == EvaluationContext("u1", {"country": "CA", "plan": "pro"})
    assert parse_context(_event({"context": {"targetingKey": "ü"}}, encode=True)).user_id == "ü"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({}, "PARSE_ERROR"),
        ({"body": "{"}, "PARSE_ERROR"),
        ({"body": "!!", "isBase64Encoded": True}, "PARSE_ERROR"),
        (_event({"ctx": {}}), "INVALID_CONTEXT"),
        (_event({"context": {"targetingKey": ["u"]}}), "INVALID_CONTEXT"),
        (_event({"context": {"targetingKey": "x" * 257}}), "INVALID_CONTEXT"),
        (_event({"context": {"targetingKey": "u\u0000"}}), "INVALID_CONTEXT"),
        (_event({"context": {"targetingKey": "u", "n": 2**60}}), "INVALID_CONTEXT"),
        ({"body": "x" * 1_100_000}, "PARSE_ERROR"),  # past the body limit
        (_event({"context": {"country": "CA"}}), "TARGETING_KEY_MISSING"),
        (_event({"context": {"targetingKey": None}}), "TARGETING_KEY_MISSING"),
    ],
)
def test_bad_contexts_have_ofreps_codes(event: dict[str, Any], code: str) -> None:
    with pytest.raises(Failure) as caught:
        parse_context(event)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert caught.value.body("recs") == {
        "key": "recs",
        "errorCode": code,
        "errorDetails": caught.value.details,
    }
