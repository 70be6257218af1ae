"""template.yaml's scale settings (issue 27): SnapStart on the HTTP functions behind an alias,
published after the migrations and switchable off; reserved concurrency; buffered ingestion's queue,
dead-letter queue, writer and network, present only when asked for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_stack import RESOURCES, TEMPLATE, functions, holds, parameters, resolve

HTTP_FUNCTIONS = ("ExperimentsFunction", "AssignmentsFunction", "EventsFunction", "MetricsFunction")


def created(params: dict[str, str]) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if "Condition" not in r or holds(r["Condition"], params)}


@pytest.mark.parametrize("logical_id", HTTP_FUNCTIONS)
@pytest.mark.parametrize(("setting", "apply_on"), [("Enabled", "PublishedVersions"), ("Disabled", "None")])
def test_http_functions_publish_snapstart_versions_after_the_migrations(
    logical_id: str, setting: str, apply_on: str
) -> None:
    function = functions()[logical_id]
    assert function["AutoPublishAlias"] == "live"
    assert RESOURCES[logical_id]["DependsOn"] == "DatabaseMigrations"
    assert resolve(function["SnapStart"], parameters({"SnapStart": setting})) == {"ApplyOn": apply_on}


def test_snapstart_is_on_by_default_and_only_on_http_functions() -> None:
    assert TEMPLATE["Parameters"]["SnapStart"]["Default"] == "Enabled"
    others = set(functions()) - set(HTTP_FUNCTIONS)
    assert others
    assert all("SnapStart" not in functions()[name] for name in others)


@pytest.mark.parametrize(("value", "reserved"), [("50", "50"), ("0", None)])
def test_reserved_concurrency_is_a_parameter(value: str, reserved: str | None) -> None:
    for logical_id in HTTP_FUNCTIONS:
        properties = resolve(
            RESOURCES[logical_id]["Properties"], parameters({"HttpReservedConcurrency": value})
        )
        assert properties.get("ReservedConcurrentExecutions") == reserved, logical_id


def test_buffered_ingestion_resources_exist_only_when_buffered() -> None:
    buffered_only = {
        "IngestQueue",
        "IngestDeadLetterQueue",
        "IngestFunction",
        "IngestQueueSendPolicy",
        "IngestLogGroup",
        "IngestSqsEndpoint",
        "IngestSqsEndpointSecurityGroup",
    }
    assert not buffered_only & set(created(parameters({})))
    assert buffered_only <= set(created(parameters({"IngestMode": "Buffered"})))
    without_endpoint = set(created(parameters({"IngestMode": "Buffered", "SqsEndpoint": "None"})))
    assert "IngestSqsEndpoint" not in without_endpoint
    assert "IngestFunction" in without_endpoint


def test_the_writer_reports_partial_batch_failures_and_failed_messages_reach_the_dlq() -> None:
    params = parameters({"IngestMode": "Buffered"})
    queue = resolve(RESOURCES["IngestQueue"]["Properties"], params)
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "<Fn::GetAtt>"
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 2
    writer = functions()["IngestFunction"]
    event = writer["Events"]["Queue"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["BatchSize"] <= 10
    assert queue["VisibilityTimeout"] >= 6 * writer["Timeout"]
    events = resolve(functions()["EventsFunction"]["Environment"]["Variables"], params)
    assert events["INGEST_MODE"] == "buffered"
    direct = resolve(functions()["EventsFunction"]["Environment"]["Variables"], parameters({}))
    assert direct["INGEST_MODE"] == "direct"
    assert "INGEST_QUEUE_URL" not in direct
