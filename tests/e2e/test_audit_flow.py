"""The audit log through the local server over real HTTP: every admin write shows up in /history and
/audit with its subject, `local` under `make run` and the token's subject in `--auth jwt` mode."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.e2e.conftest import Http, start_server
from tests.integration.test_experiments_api import experiment_body

BASE = "/api/v1/experiments"


def write(http: Http, method: str, path: str, body: Any = None, **headers: str) -> dict[str, Any]:
    status, _, answer = http.request(method, path, body, headers=headers)
    assert status in (200, 201, 204), (method, path, status, answer)
    return answer or {}


def test_every_admin_write_shows_up_with_the_subject_local(http: Http) -> None:
    exp = write(
        http, "POST", BASE, experiment_body(name="e2e_audit", surface="e2e-audit", namespace_share=0.5)
    )
    ident = exp["id"]
    write(http, "PATCH", f"{BASE}/{ident}", {"description": "why not"}, **{"X-Change-Reason": "copy edit"})
    for status in ("running", "paused", "running"):
        write(http, "PUT", f"{BASE}/{ident}/status", {"status": status})
    write(http, "PATCH", f"{BASE}/{ident}", {"namespace_share": 0.6})
    write(http, "PUT", f"{BASE}/{ident}/status", {"status": "completed"})
    draft = write(http, "POST", BASE, experiment_body(name="e2e_audit_draft"))
    write(http, "DELETE", f"{BASE}/{draft['id']}")

    status, _, page = http.request("GET", f"{BASE}/{ident}/history")
    assert status == 200
    assert [e["action"] for e in page["events"]] == [
        "namespace.release",
        "experiment.complete",
        "namespace.allocate",
        "experiment.update",
        "experiment.resume",
        "experiment.pause",
        "namespace.allocate",
        "experiment.start",
        "experiment.update",
        "experiment.create",
    ]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in page["events"]} == {("local", "local")}
    assert page["events"][-2]["reason"] == "copy edit"

    status, _, feed = http.request("GET", "/api/v1/audit?actor=local&limit=100")
    assert status == 200
    assert len(feed["events"]) == 12  # the ten above, and the draft's create and delete
    status, _, deleted = http.request(
        "GET", f"/api/v1/audit?entity_type=experiment&entity_id={draft['id']}&action=experiment.delete"
    )
    assert [e["before"]["name"] for e in deleted["events"]] == ["e2e_audit_draft"]
    since = quote(page["events"][-1]["occurred_at"])
    status, _, recent = http.request("GET", f"/api/v1/audit?since={since}&entity_id={ident}")
    assert (status, len(recent["events"])) == (200, 7)  # the namespace entries name the surface

    status, _, error = http.request("GET", "/api/v1/audit?since=2026-05-01T10:00:00")
    assert (status, error["error"], error["field"]) == (422, "validation_error", "since")


def test_every_admin_write_of_the_issue_shows_up_with_its_subject(http: Http) -> None:
    """Issue 12's acceptance: experiments, status, edits, namespace shares, targeting, overrides, saved
    groups and holdouts each show up in /history (an experiment's) or /audit, by `local`."""
    group = write(http, "POST", "/api/v1/saved-groups", {"key": "e2e_vips", "values": ["ann"]})
    write(http, "PUT", f"/api/v1/saved-groups/{group['id']}", {"values": ["ann", "bob"]})
    exp = write(
        http,
        "POST",
        BASE,
        experiment_body(name="e2e_audit_all", surface="e2e-audit-all", namespace_share=0.4),
    )
    ident = exp["id"]
    write(http, "PATCH", f"{BASE}/{ident}", {"description": "edited"})
    write(http, "PATCH", f"{BASE}/{ident}", {"targeting": {"country": {"$in": ["FR", "BE"]}}})
    write(http, "PUT", f"{BASE}/{ident}/status", {"status": "running"})
    write(http, "PATCH", f"{BASE}/{ident}", {"namespace_share": 0.5})
    user = quote("qa@example.com", safe="")
    write(http, "PUT", f"{BASE}/{ident}/overrides/{user}", {"variant": "treatment"})
    write(http, "DELETE", f"{BASE}/{ident}/overrides/{user}")
    write(http, "PUT", f"{BASE}/{ident}/status", {"status": "paused"})
    write(http, "DELETE", f"/api/v1/saved-groups/{group['id']}")
    holdout = write(http, "POST", "/api/v1/holdouts", {"name": "e2e_holdout", "percent": 0.05, "all": True})
    write(http, "PUT", f"/api/v1/holdouts/{holdout['id']}/status", {"status": "running"})

    status, _, page = http.request("GET", f"{BASE}/{ident}/history")
    assert status == 200
    events = page["events"]
    assert [(e["action"], e["entity_type"]) for e in events] == [
        ("experiment.pause", "experiment"),  # a paused experiment keeps its buckets
        ("override.delete", "override"),
        ("override.set", "override"),
        ("namespace.allocate", "namespace"),
        ("experiment.update", "experiment"),
        ("namespace.allocate", "namespace"),
        ("experiment.start", "experiment"),
        ("experiment.update", "experiment"),
        ("experiment.update", "experiment"),
        ("experiment.create", "experiment"),
    ]
    assert {(e["actor"]["type"], e["actor"]["id"]) for e in events} == {("local", "local")}
    targeting = events[-3]
    assert targeting["changes"] == [
        {"field": "targeting", "before": {}, "after": {"country": {"$in": ["FR", "BE"]}}}
    ]
    assert (events[2]["entity_id"], events[2]["after"]) == (
        "qa@example.com",
        {"user_id": "qa@example.com", "variant": "treatment"},
    )

    status, _, groups = http.request("GET", "/api/v1/audit?entity_type=saved_group")
    assert status == 200
    assert [(e["action"], e["entity_id"], e["actor"]["id"]) for e in groups["events"]] == [
        ("saved_group.delete", group["id"], "local"),
        ("saved_group.update", group["id"], "local"),
        ("saved_group.create", group["id"], "local"),
    ]
    assert groups["events"][1]["changes"] == [{"field": "values", "before": ["ann"], "after": ["ann", "bob"]}]
    status, _, holdouts = http.request("GET", "/api/v1/audit?entity_type=holdout")
    assert status == 200
    assert [(e["action"], e["entity_id"], e["actor"]["id"]) for e in holdouts["events"]] == [
        ("holdout.start", holdout["id"], "local"),
        ("holdout.create", holdout["id"], "local"),
    ]
    # The whole feed holds exactly these, every one by `local`.
    status, _, everything = http.request("GET", "/api/v1/audit?limit=100")
    assert status == 200
    assert len(everything["events"]) == len(events) + 3 + 2
    assert {e["actor"]["id"] for e in everything["events"]} == {"local"}


def test_in_jwt_mode_the_subject_is_the_tokens(database_url: str, clean_db: str) -> None:
    from localdev.auth import development_token

    admin = {"Authorization": f"Bearer {development_token(['admin', 'read'], subject='alice@example.com')}"}
    reader = {"Authorization": f"Bearer {development_token(['read'])}"}
    with start_server(database_url, "--auth", "jwt") as http:
        status, _, exp = http.request("POST", BASE, experiment_body(name="jwt_audit"), headers=admin)
        assert status == 201
        status, _, _ = http.request("PUT", f"{BASE}/{exp['id']}/status", {"status": "running"}, headers=admin)
        assert status == 200

        assert http.request("GET", f"{BASE}/{exp['id']}/history")[0] == 403
        status, _, page = http.request("GET", f"{BASE}/{exp['id']}/history", headers=reader)
        assert status == 200
        assert [(e["action"], e["actor"]["type"], e["actor"]["id"]) for e in page["events"]] == [
            ("namespace.allocate", "user", "alice@example.com"),
            ("experiment.start", "user", "alice@example.com"),
            ("experiment.create", "user", "alice@example.com"),
        ]
        assert page["events"][0]["actor"]["scopes"] == ["abtest/admin", "abtest/read"]
        status, _, feed = http.request("GET", "/api/v1/audit?actor=alice%40example.com", headers=reader)
        assert (status, len(feed["events"])) == (200, 3)
