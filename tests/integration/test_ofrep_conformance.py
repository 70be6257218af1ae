"""Every OFREP answer validates against the protocol's own OpenAPI document (version 0.3.0), read from
beside the checkout, `shared/conformance/ofrep-openapi.yaml` in its parent folder (never copied into
this repository): without it the test skips, naming the path; under CI (`CI` set) it fails instead.

One reading differs from the document, as the protocol's ADR 0006 defines it: `codeDefaultFlag` is an
answer WITHOUT `value`. Read literally (`type: object, properties: {}`), it matches every object, so
the `oneOf` of flag types could never validate an answer that has a value."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from localdev.postgres import PROJECT_ROOT
from tests.integration.conftest import ApiResponse
from tests.integration.test_assignments_api import running_experiment
from tests.integration.test_experiments_api import BASE
from tests.integration.test_holdouts import running_holdout, users_by_group
from tests.integration.test_ofrep import FLAGS, evaluate, post

jsonschema_rs = pytest.importorskip("jsonschema_rs")

SPEC = PROJECT_ROOT.parent / "shared" / "conformance" / "ofrep-openapi.yaml"


def validator(spec: dict[str, Any], schema: str) -> Any:
    """A validator of one of the document's component schemas (its $refs resolve in the document)."""
    components = copy.deepcopy(spec["components"])
    # ADR 0006: the code default is the answer without a value (see the module docstring).
    components["schemas"]["codeDefaultFlag"] = {"type": "object", "not": {"required": ["value"]}}
    root = {"$ref": f"#/components/schemas/{schema}", "components": components}
    return jsonschema_rs.Draft202012Validator(root)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.is_file():
        message = f"OFREP OpenAPI document not found: looked for {SPEC}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the conformance check must run")
        pytest.skip(message)
    loaded: dict[str, Any] = yaml.safe_load(Path(SPEC).read_text(encoding="utf-8"))
    assert loaded["info"]["version"] == "0.3.0"
    return loaded


def check(spec: dict[str, Any], schema: str, response: ApiResponse, status: int) -> None:
    assert response.status == status, response
    errors = [str(e) for e in validator(spec, schema).iter_errors(response.json)]
    assert errors == [], (schema, response.json)


def test_every_answer_validates(api: Any, spec: dict[str, Any]) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    api("PUT", f"{BASE}/{experiment['id']}/overrides/qa-user", {"variant": "treatment"})
    holdout = running_holdout(api, percent=0.1)
    groups = users_by_group(holdout)
    success = evaluate("recommendations", {"targetingKey": groups["measurement"][0]})
    assert success.json["reason"] == "SPLIT"
    held = evaluate("recommendations", {"targetingKey": groups["holdout"][0]})
    assert held.json["reason"] == "DISABLED"
    forced = evaluate("recommendations", {"targetingKey": "qa-user"})

    for answer in (success, held, forced):
        check(spec, "serverEvaluationSuccess", answer, 200)
    check(spec, "flagNotFound", evaluate("checkout", {"targetingKey": "u"}), 404)
    for raw in ("", "{", '{"context": 1}', '{"context": {}}'):
        check(spec, "evaluationFailure", evaluate("recommendations", raw=raw), 400)

    bulk = post(FLAGS, '{"context": {"targetingKey": "u1"}}')
    check(spec, "bulkEvaluationSuccess", bulk, 200)
    check(spec, "bulkEvaluationFailure", post(FLAGS, '{"context": {}}'), 400)


def test_the_code_default_validates(api: Any, spec: dict[str, Any]) -> None:
    experiment = running_experiment(api, traffic_allocation=1.0)
    api("PUT", f"{BASE}/{experiment['id']}/status", {"status": "completed"})

    default = evaluate("recommendations", {"targetingKey": "u"})

    assert "value" not in default.json
    check(spec, "serverEvaluationSuccess", default, 200)
    # The reading matters: literally, an answer with a value would match two arms of the oneOf.
    assert validator(spec, "serverEvaluationSuccess").is_valid({"key": "k", "reason": "SPLIT", "value": {}})
