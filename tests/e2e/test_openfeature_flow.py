"""Issue 26 acceptance: the OpenFeature Python SDK and its OFREP provider, as a user runs them, against
the local server. The first test executes the five lines docs/openfeature.md shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from localdev.auth import development_token
from localdev.postgres import PROJECT_ROOT
from tests.e2e.conftest import Http
from tests.integration.test_experiments_api import experiment_body

openfeature = pytest.importorskip(
    "openfeature", reason="openfeature-sdk is in the dev lock: run make install"
)
from openfeature import api  # noqa: E402
from openfeature.contrib.provider.ofrep import OFREPProvider  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.exception import ErrorCode  # noqa: E402
from openfeature.flag_evaluation import Reason  # noqa: E402

BASE = "/api/v1/experiments"
TOKEN = development_token(["evaluate"])


def snippet() -> str:
    """The Python block of docs/openfeature.md's "five lines"."""
    page = (PROJECT_ROOT / "docs" / "openfeature.md").read_text(encoding="utf-8")
    found = re.search(r"^```python\n(.*?)^```", page, flags=re.DOTALL | re.MULTILINE)
    assert found is not None, "docs/openfeature.md has no python block"
    return found.group(1)


def start(http: Http, **fields: Any) -> dict[str, Any]:
    status, _, experiment = http.request("POST", BASE, experiment_body(traffic_allocation=1.0, **fields))
    assert status == 201, experiment
    assert http.request("PUT", f"{BASE}/{experiment['id']}/status", {"status": "running"})[0] == 200
    return experiment


@pytest.fixture
def client(http: Http) -> Iterator[Any]:
    api.set_provider(
        OFREPProvider(http.base_url, headers_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})
    )
    yield api.get_client()
    api.clear_providers()


def test_the_documented_five_lines_get_the_variant_config(http: Http) -> None:
    experiment = start(http)
    lines = snippet()
    assert len([line for line in lines.splitlines() if line.strip()]) == 5
    scope: dict[str, Any] = {"API_URL": http.base_url, "TOKEN": TOKEN}
    try:
        exec(lines, scope)
    finally:
        api.clear_providers()
    assert scope["config"] in [v["config"] for v in experiment["variants"]]


def test_the_sdk_sees_value_variant_reason_and_errors(http: Http, client: Any) -> None:
    experiment = start(http)
    context = EvaluationContext("user-7", {"country": "CA"})

    first = client.get_object_details("recommendations", {}, context)
    again = client.get_object_details("recommendations", {}, context)

    served = {f"{experiment['name']}:{v['name']}": v["config"] for v in experiment["variants"]}
    assert first.variant in served
    assert first.value == served[first.variant]
    assert first.reason == Reason.SPLIT
    assert first.error_code is None
    assert (again.value, again.variant, again.reason) == (first.value, first.variant, first.reason)
    assert first.flag_metadata["experimentId"] == experiment["id"]

    status, _, _ = http.request(
        "PUT", f"{BASE}/{experiment['id']}/overrides/qa-user", {"variant": "treatment"}
    )
    assert status in (200, 201)
    forced = client.get_object_details("recommendations", {}, EvaluationContext("qa-user"))
    assert (forced.reason, forced.variant) == (Reason.TARGETING_MATCH, f"{experiment['name']}:treatment")

    unknown = client.get_object_details("checkout", {"default": True}, context)
    assert (unknown.error_code, unknown.value) == (ErrorCode.FLAG_NOT_FOUND, {"default": True})
    missing = client.get_object_details("recommendations", {"default": True}, EvaluationContext())
    assert (missing.error_code, missing.value) == (ErrorCode.TARGETING_KEY_MISSING, {"default": True})

    # Two single evaluations of user-7 were exposures: /metrics counts them.
    status, _, metrics = http.request("GET", f"{BASE}/{experiment['id']}/metrics")
    assert status == 200
    assert sum(v["exposures"] for v in metrics["variant_metrics"].values()) == 2


def test_bulk_is_a_prefetch_without_exposure_and_answers_304(http: Http) -> None:
    experiment = start(http)
    start(http, name="checkout_test", surface="checkout")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"context": {"targetingKey": "user-9"}}

    status, answer_headers, answer = http.request("POST", "/ofrep/v1/evaluate/flags", body, headers=headers)
    assert status == 200, answer
    assert [flag["key"] for flag in answer["flags"]] == ["checkout", "recommendations"]
    assert all(flag["reason"] == "SPLIT" for flag in answer["flags"])
    assert answer["metadata"] == {"prefetch": True, "exposuresRecorded": False}
    tag = answer_headers["ETag"]

    status, again_headers, again = http.request(
        "POST", "/ofrep/v1/evaluate/flags", body, headers={**headers, "If-None-Match": tag}
    )
    assert (status, again, again_headers["ETag"]) == (304, None, tag)

    # The prefetch stored the assignment (sticky) but recorded no exposure.
    _, _, metrics = http.request("GET", f"{BASE}/{experiment['id']}/metrics")
    assert sum(v["exposures"] for v in metrics["variant_metrics"].values()) == 0
    _, _, stored = http.request("GET", f"{BASE}/{experiment['id']}/assignments/user-9")
    assert stored["enrolled"] is True
