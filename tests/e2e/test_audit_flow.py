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
