"""Alerts against the real database: once per transition, with evidence, in the history; the outbox
relayed at least once with the same message ids; a delivery killed between sending and recording loses
nothing; repeated failures disable a subscription (audited); digests once per slot; the routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from abtest.delivery.dispatch import Dispatcher, queue_digests
from abtest.delivery.pinned_http import post
from abtest.delivery.secret_box import LocalSecretBox
from abtest.domain.alerts import AlertKind, WebhookCreate
from abtest.domain.audit import SYSTEM_ACTOR
from abtest.domain.webhook_signing import generate_secret, verify
from abtest.settings import settings_from_env
from abtest.storage.alerts import AlertRepository, EvaluationSettings, OutboxRepository
from abtest.storage.database import get_database
from abtest.storage.rollups import RollupRepository
from abtest.storage.webhooks import WebhookRepository
from tests.integration.test_events_and_metrics import rollup, start
from tests.integration.test_results import populate
from tests.webhook_receiver import Receiver

SETTINGS = settings_from_env(
    {
        "WEBHOOK_LOCAL_MODE": "true",
        "WEBHOOK_RETRY_BASE_SECONDS": "10",
        "WEBHOOK_LEASE_SECONDS": "60",
        "WEBHOOK_DISABLE_AFTER_FAILURES": "3",
        "WEBHOOK_MAX_ATTEMPTS": "8",
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


BOX = LocalSecretBox(bytes(range(32)))


def dispatcher(clock: Clock, **extra: Any) -> Dispatcher:
    db = get_database()
    return Dispatcher(
        OutboxRepository(db), WebhookRepository(db), SETTINGS, box=lambda: BOX, clock=clock, **extra
    )


def subscribe(url: str, kinds: list[AlertKind] | None = None) -> tuple[str, Any]:
    secret = generate_secret()
    body = WebhookCreate(url=url) if kinds is None else WebhookCreate(url=url, kinds=kinds)
    hook = WebhookRepository(get_database()).create(
        body, BOX.seal(secret), actor=SYSTEM_ACTOR, last_digest_at=None
    )
    return secret, hook


def skewed(api: Any, clean_db: str) -> dict[str, Any]:
    experiment = start(
        api, variants=[{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]
    )
    populate(clean_db, experiment, [700, 100], [0, 0], 1.0)
    # The rollup alone (the handler would also evaluate and relay: these tests do each step themselves).
    if RollupRepository(get_database()).roll_up().users == 0:
        pytest.skip("another session's open transaction holds the rollup horizon back (by design)")
    AlertRepository(get_database()).evaluate(datetime.now(UTC))
    return experiment


def rows(url: str, query: str, params: Any = None) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query.encode(), params)
        return cursor.fetchall() if cursor.description else []


def test_an_srm_alert_fires_once_per_transition_with_evidence_and_history(api: Any, clean_db: str) -> None:
    experiment = skewed(api, clean_db)  # the rollup handler evaluated once already
    alerts = AlertRepository(get_database())
    for _ in range(3):
        alerts.evaluate(datetime.now(UTC))
    page = alerts.page(kind=AlertKind.SRM_DETECTED)
    assert [a.experiment_id for a in page.items] == [experiment["id"]] or [
        str(a.experiment_id) for a in page.items
    ] == [experiment["id"]]
    evidence = page.items[0].evidence
    assert evidence["sequential_p"] < 0.001
    assert evidence["users"] == {
        str(experiment["variants"][0]["id"]): 700,
        str(experiment["variants"][1]["id"]): 100,
    }
    assert rows(clean_db, "SELECT count(*) FROM alert_outbox") == [(1,)]
    history = api("GET", f"/api/v1/experiments/{experiment['id']}/history")
    assert "alert.srm_detected" in [e["action"] for e in history.json["events"]]
    listed = api("GET", "/api/v1/alerts", query=f"experiment_id={experiment['id']}&kind=srm_detected")
    assert [a["kind"] for a in listed.json["alerts"]] == ["srm_detected"]
    assert api("GET", "/api/v1/alerts", query="kind=no_exposures").json["alerts"] == []
    assert api("GET", "/api/v1/alerts", query="kind=nonsense").status == 422
    assert api("GET", "/api/v1/alerts", query="cursor=garbage").json["field"] == "cursor"
    results = api("GET", f"/api/v1/experiments/{experiment['id']}/results").json
    assert results["srm"]["sequential_flag"] is True
    series = api("GET", f"/api/v1/experiments/{experiment['id']}/results/timeseries").json
    assert series["points"][-1]["srm_sequential_p_value"] == pytest.approx(
        results["srm"]["sequential_p_value"]
    )


def test_no_exposures_and_failed_rollups_fire_on_their_transitions(api: Any, clean_db: str) -> None:
    experiment = start(api)
    alerts = AlertRepository(get_database())
    now = datetime.now(UTC)
    assert alerts.evaluate(now).alerts == []
    silent = alerts.evaluate(now + timedelta(hours=25), EvaluationSettings(no_exposures_hours=24)).alerts
    assert [a.kind for a in silent] == [AlertKind.NO_EXPOSURES]
    assert alerts.evaluate(now + timedelta(hours=26)).alerts == []  # still silent: no second alert
    rows(
        clean_db,
        "INSERT INTO rollup_failures (experiment_id, since, error) VALUES (%s, '1'::xid8, 'FoldError')",
        (experiment["id"],),
    )
    failed = alerts.evaluate(now + timedelta(hours=27)).alerts
    assert [(a.kind, a.evidence["error"]) for a in failed] == [
        (AlertKind.EXPERIMENT_FAILED_ROLLUP, "FoldError")
    ]
    rows(clean_db, "DELETE FROM rollup_failures")
    assert alerts.evaluate(now + timedelta(hours=28)).alerts == []
    rows(
        clean_db,
        "INSERT INTO rollup_failures (experiment_id, since, error) VALUES (%s, '1'::xid8, 'DataError')",
        (experiment["id"],),
    )
    again = alerts.evaluate(now + timedelta(hours=29)).alerts  # a new transition: a new alert
    assert [a.kind for a in again] == [AlertKind.EXPERIMENT_FAILED_ROLLUP]


def test_significance_reached_fires_once_per_metric(api: Any, clean_db: str) -> None:
    experiment = start(
        api, variants=[{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]
    )
    populate(clean_db, experiment, [3000, 3000], [300, 900], 1.0)
    if rollup()["users"] == 0:
        pytest.skip("another session's open transaction holds the rollup horizon back (by design)")
    alerts = AlertRepository(get_database())
    alerts.evaluate(datetime.now(UTC))
    found = alerts.page(kind=AlertKind.SIGNIFICANCE_REACHED).items
    assert [(a.subject, a.evidence["comparisons"][0]["variant"]) for a in found] == [
        ("purchase", "treatment")
    ]


def test_the_relay_hands_each_alert_on_at_least_once_with_the_same_ids(
    api: Any, clean_db: str, receiver: Receiver
) -> None:
    secret, _ = subscribe(receiver.url, [AlertKind.SRM_DETECTED])
    skewed(api, clean_db)

    class Flaky:
        calls = 0

        def publish(self, alerts: Any) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("the bus is away")

    clock = Clock()
    relay = dispatcher(clock, publisher=Flaky())
    with pytest.raises(RuntimeError):
        relay.relay()  # fanned out, not published, not marked: relayed again below
    first = rows(clean_db, "SELECT id FROM webhook_messages")
    run = relay.relay()
    assert run.alerts == 1
    assert rows(clean_db, "SELECT id FROM webhook_messages") == first  # no second id for the same alert
    assert relay.relay().alerts == 0
    clock.now = datetime.now(UTC)
    assert relay.deliver_due() == {"delivered": 1}
    ((headers, body),) = receiver.requests
    assert headers["webhook-id"] == first[0][0]
    assert verify(secret, headers, body)


def test_a_delivery_killed_between_send_and_record_loses_no_alert(
    api: Any, clean_db: str, receiver: Receiver
) -> None:
    secret, _ = subscribe(receiver.url)
    skewed(api, clean_db)

    class Killed(BaseException):
        """The process dies: nothing after the send runs (not even except Exception blocks)."""

    def send_then_die(pinned: Any, body: bytes, headers: dict[str, str]) -> Any:
        post(pinned, body, headers)
        raise Killed

    clock = Clock()
    dying = dispatcher(clock, sender=send_then_die)
    dying.relay()
    clock.now = datetime.now(UTC)
    with pytest.raises(Killed):
        dying.deliver_due()
    assert len(receiver.requests) == 1
    assert rows(clean_db, "SELECT status, attempts FROM webhook_messages") == [("pending", 0)]
    assert rows(clean_db, "SELECT count(*) FROM webhook_deliveries") == [(0,)]

    healthy = dispatcher(clock)
    assert healthy.deliver_due() == {}  # claimed by the dead attempt: not before its lease runs out
    clock.now += timedelta(seconds=61)
    assert healthy.relay().enqueued  # the sweep finds it again
    assert healthy.deliver_due() == {"delivered": 1}
    assert [h["webhook-id"] for h, _ in receiver.requests] == [receiver.requests[0][0]["webhook-id"]] * 2
    for headers, body in receiver.requests:
        assert verify(secret, headers, body, now=clock.now)
    assert rows(clean_db, "SELECT status, attempts FROM webhook_messages") == [("delivered", 1)]


def test_repeated_failures_disable_the_subscription_and_say_so_in_the_audit_log(
    api: Any, clean_db: str, receiver: Receiver
) -> None:
    receiver.status = 500
    _, hook = subscribe(receiver.url)
    clock = Clock()
    relay = dispatcher(clock)
    webhooks = WebhookRepository(get_database())
    for _ in range(3):
        webhooks.add_message(hook.id, "test", '{"type":"test"}')
    clock.now = datetime.now(UTC)
    assert relay.deliver_due() == {"retry": 3}
    assert webhooks.get(hook.id).enabled is False
    assert webhooks.get(hook.id).disabled_reason == "3 failed attempts in a row"
    audit = api("GET", "/api/v1/audit", query=f"entity_id={hook.id}&action=webhook.disable")
    assert len(audit.json["events"]) == 1
    clock.now += timedelta(hours=1)
    assert relay.deliver_due() == {}  # disabled: nothing more is sent
    refused = api("POST", f"/api/v1/webhooks/{hook.id}/test")
    assert (refused.status, refused.json["error"], refused.json["field"]) == (409, "conflict", "enabled")
    answer = api("PATCH", f"/api/v1/webhooks/{hook.id}", {"enabled": True})
    assert (answer.status, answer.json["enabled"], answer.json["consecutive_failures"]) == (200, True, 0)


def test_digests_are_queued_once_per_slot_and_the_page_renders(api: Any, clean_db: str) -> None:
    skewed(api, clean_db)
    created = api(
        "POST",
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "digest": {"every": "day", "hour_utc": 6}},
    )
    assert created.status == 201, created.json
    db = get_database()
    webhooks, alerts = WebhookRepository(db), AlertRepository(db)
    now = datetime.now(UTC)
    assert queue_digests(webhooks, alerts, now) == 0  # the slot at creation counts as done
    assert queue_digests(webhooks, alerts, now + timedelta(days=1)) == 1
    assert queue_digests(webhooks, alerts, now + timedelta(days=1, minutes=5)) == 0
    ((kind, body),) = rows(clean_db, "SELECT type, body FROM webhook_messages")
    assert kind == "digest"
    assert '"type":"digest"' in body
    assert "srm_detected" in body
    page = api("GET", "/api/v1/digest", query="every=week")
    assert page.status == 200
    assert "Experiments digest" in page.text
    assert "srm_detected" in page.text
    assert api("GET", "/api/v1/digest", query="every=month").status == 422


def test_webhook_routes(api: Any) -> None:
    created = api("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/x", "kinds": ["srm_detected"]})
    assert created.status == 201
    hook_id = created.json["id"]
    assert "secret" not in api("GET", f"/api/v1/webhooks/{hook_id}").json
    assert [h["id"] for h in api("GET", "/api/v1/webhooks").json["webhooks"]] == [hook_id]
    changed = api("PATCH", f"/api/v1/webhooks/{hook_id}", {"kinds": ["no_exposures", "srm_detected"]})
    assert changed.json["kinds"] == ["srm_detected", "no_exposures"]
    bad = api("PATCH", f"/api/v1/webhooks/{hook_id}", {"url": "https://192.168.0.1/"})
    assert (bad.status, bad.json["field"]) == (422, "url")
    assert api("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1/", "kinds": ["nope"]}).status == 422
    assert api("POST", f"/api/v1/webhooks/{hook_id}/test").status == 202
    assert api("GET", f"/api/v1/webhooks/{hook_id}/deliveries").json == {
        "deliveries": [],
        "next_cursor": None,
    }
    assert api("GET", "/api/v1/webhooks", scopes=("read",)).status == 403
    assert api("DELETE", f"/api/v1/webhooks/{hook_id}").status == 204
    assert api("GET", f"/api/v1/webhooks/{hook_id}").json["error"] == "webhook_not_found"
    assert api("DELETE", f"/api/v1/webhooks/{hook_id}").status == 404


def test_after_a_rotation_both_secrets_sign_for_the_grace_period(
    api: Any, clean_db: str, receiver: Receiver
) -> None:
    created = api("POST", "/api/v1/webhooks", {"url": receiver.url})
    old = created.json["secret"]
    rotated = api("PATCH", f"/api/v1/webhooks/{created.json['id']}", {"rotate_secret": True})
    new = rotated.json["secret"]
    audit = api("GET", "/api/v1/audit", query=f"entity_id={created.json['id']}&action=webhook.update")
    assert audit.json["events"][0]["after"]["secret_rotated"] is True
    queued = api("POST", f"/api/v1/webhooks/{created.json['id']}/test").json["message_id"]
    # The routes sealed with the service's box (the local key file), so the delivery opens with it.
    relay = Dispatcher(
        OutboxRepository(get_database()), WebhookRepository(get_database()), SETTINGS, box=wiring_box
    )
    assert relay.deliver(queued) == "delivered"
    ((headers, body),) = receiver.requests
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(new, headers, body)
    assert verify(old, headers, body)  # receivers still on the old secret keep working
    rows(clean_db, "UPDATE webhooks SET previous_secret_until = now() - interval '1 second'")
    api("POST", f"/api/v1/webhooks/{created.json['id']}/test")
    relay.deliver_due()
    headers, body = receiver.requests[-1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verify(new, headers, body)
    assert not verify(old, headers, body)


def wiring_box() -> Any:
    from abtest import wiring

    return wiring.secret_box()


def test_a_decision_and_a_breached_guardrail_raise_their_alerts_once(api: Any, clean_db: str) -> None:
    from tests.integration.test_metric_definitions import (
        GOAL,
        LATENCY,
        REVENUE,
        ROLES,
        define,
        launch,
        load,
        shop,
    )

    define(api, GOAL, LATENCY, REVENUE)
    experiment = launch(api, metrics=ROLES, decision={"min_days": 0})
    load(clean_db, experiment, [2000, 2000], shop(10.0))  # +10% latency against a 2% margin: rollback
    if RollupRepository(get_database()).roll_up().users == 0:
        pytest.skip("another session's open transaction holds the rollup horizon back (by design)")
    alerts = AlertRepository(get_database())
    raised = alerts.evaluate(datetime.now(UTC)).alerts
    assert alerts.evaluate(datetime.now(UTC)).alerts == []  # once per transition
    by_kind = {alert.kind: alert for alert in raised}
    assert set(by_kind) == {AlertKind.DECISION_CHANGED, AlertKind.GUARDRAIL_BREACHED}
    decision = by_kind[AlertKind.DECISION_CHANGED].evidence
    assert decision["decision"]["action"] == "rollback"
    assert decision["previous"] is None
    assert any("latency" in reason for reason in decision["decision"]["reasons"])
    guardrail = by_kind[AlertKind.GUARDRAIL_BREACHED]
    assert guardrail.subject == "latency"
    assert guardrail.evidence["guardrail"]["inferior"][0]["noninferiority"]["outcome"] == "inferior"
    # With a decision, significance is the decision's business: no significance_reached alerts.
    assert alerts.page(kind=AlertKind.SIGNIFICANCE_REACHED).items == []
