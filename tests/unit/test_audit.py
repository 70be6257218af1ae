"""The audit log's pure parts: the field-level diff, entries, actions, the actor read from a request,
instants and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from abtest.domain.audit import (
    LOCAL_ACTOR,
    SYSTEM_ACTOR,
    Actor,
    AuditEntry,
    FieldChange,
    changes,
    parse_instant,
)
from abtest.domain.audit_entries import (
    experiment_created,
    experiment_deleted,
    experiment_updated,
    holdout_created,
    holdout_status_changed,
    namespace_share_changed,
    override_deleted,
    override_set,
    saved_group_created,
    saved_group_deleted,
    saved_group_updated,
    status_changed,
    transition_action,
)
from abtest.domain.experiments import Experiment, Status
from abtest.domain.holdouts import Holdout
from abtest.domain.overrides import Override
from abtest.domain.saved_groups import SavedGroup
from abtest.errors import InvalidInput
from abtest.http.actor import request_actor

NOW = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def experiment(**overrides: Any) -> Experiment:
    data: dict[str, Any] = {
        "id": UUID("00000000-0000-4000-8000-000000000001"),
        "name": "exp",
        "description": "d",
        "status": Status.DRAFT,
        "traffic_allocation": 0.5,
        "salt": "s",
        "surface": "checkout",
        "namespace_share": 0.5,
        "variants": [],
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": None,
        "completed_at": None,
    }
    data.update(overrides)
    return Experiment.model_validate(data)


# --- changes ---------------------------------------------------------------------------------------


def test_changes_lists_the_fields_that_differ_in_key_order() -> None:
    diff = changes({"b": 1, "a": "x", "same": [1, 2]}, {"b": 2, "a": "y", "same": [1, 2]})
    assert diff == [FieldChange(field="a", before="x", after="y"), FieldChange(field="b", before=1, after=2)]


def test_changes_ignores_the_timestamps_every_write_moves() -> None:
    later = NOW + timedelta(seconds=1)
    before = {"description": "a", "updated_at": NOW, "created_at": NOW}
    after = {"description": "a", "updated_at": later, "created_at": later}
    assert changes(before, after) == []
    assert changes(before, after, exclude=()) != []


def test_a_field_present_on_one_side_only_is_a_change_even_if_null() -> None:
    assert changes({"a": None}, {}) == [FieldChange(field="a", before=None, after=None)]
    assert changes({}, {"a": 1}) == [FieldChange(field="a", before=None, after=1)]


def test_changes_compares_json_values() -> None:
    # A UUID and its text, a datetime and its ISO text are the same stored value: no change.
    ident = uuid4()
    assert (
        changes({"id": ident, "at": NOW}, {"id": str(ident), "at": "2026-05-01T10:00:00Z"}, exclude=()) == []
    )
    # Nested values are compared whole and reported under their top-level field.
    diff = changes({"config": {"a": {"b": 1}}}, {"config": {"a": {"b": 2}}})
    assert diff == [FieldChange(field="config", before={"a": {"b": 1}}, after={"a": {"b": 2}})]


def test_creations_and_deletions_have_no_field_level_diff() -> None:
    assert changes(None, {"a": 1}) == []
    assert changes({"a": 1}, None) == []


# --- entries ---------------------------------------------------------------------------------------


def test_an_entry_computes_its_changes_and_stores_ids_and_times_as_text() -> None:
    ident = uuid4()
    entry = AuditEntry(
        actor=SYSTEM_ACTOR,
        action="override.set",
        entity_type="experiment",
        entity_id=ident,
        before={"variant": "a", "at": NOW},
        after={"variant": "b", "at": NOW},
    )
    assert entry.entity_id == str(ident)
    assert entry.before == {"variant": "a", "at": "2026-05-01T10:00:00Z"}
    assert entry.changes == [FieldChange(field="variant", before="a", after="b")]


def test_given_changes_are_kept() -> None:
    given = [FieldChange(field="x", before=1, after=2)]
    entry = AuditEntry(actor=SYSTEM_ACTOR, action="a.b", entity_type="e", entity_id="1", changes=given)
    assert entry.changes == given


@pytest.mark.parametrize(
    "overrides",
    [
        {"action": "experiment"},  # no verb
        {"action": "Experiment.Create"},
        {"action": "experiment.create; drop"},
        {"entity_type": "Experiment"},
        {"entity_id": ""},
        {"entity_id": "x" * 257},
        {"parent_type": "experiment"},  # without parent_id
        {"parent_id": "1"},  # without parent_type
    ],
)
def test_malformed_entries_are_refused(overrides: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "actor": SYSTEM_ACTOR,
        "action": "experiment.create",
        "entity_type": "experiment",
        "entity_id": "1",
        **overrides,
    }
    with pytest.raises(ValidationError):
        AuditEntry(**fields)


@pytest.mark.parametrize(
    ("current", "target", "action"),
    [
        (Status.DRAFT, Status.RUNNING, "experiment.start"),
        (Status.RUNNING, Status.PAUSED, "experiment.pause"),
        (Status.PAUSED, Status.RUNNING, "experiment.resume"),
        (Status.RUNNING, Status.COMPLETED, "experiment.complete"),
        (Status.PAUSED, Status.COMPLETED, "experiment.complete"),
    ],
)
def test_each_transition_has_its_action(current: Status, target: Status, action: str) -> None:
    assert transition_action(current, target) == action
    entry = status_changed(LOCAL_ACTOR, experiment(status=current), experiment(status=target))
    assert entry is not None
    assert (entry.action, entry.before, entry.after) == (
        action,
        {"status": current.value, "started_at": None, "completed_at": None},
        {"status": target.value, "started_at": None, "completed_at": None},
    )
    assert entry.changes == [FieldChange(field="status", before=current.value, after=target.value)]


def test_repeating_a_status_records_nothing() -> None:
    assert status_changed(LOCAL_ACTOR, experiment(), experiment()) is None


def test_an_update_records_only_the_edited_fields() -> None:
    before = experiment(description="old", traffic_allocation=0.5)
    after = experiment(description="new", traffic_allocation=0.5, updated_at=NOW + timedelta(seconds=5))
    entry = experiment_updated(LOCAL_ACTOR, before, after, {"description", "traffic_allocation"})
    assert entry is not None
    assert entry.action == "experiment.update"
    assert entry.before == {"description": "old", "traffic_allocation": 0.5}
    assert entry.after == {"description": "new", "traffic_allocation": 0.5}
    assert entry.changes == [FieldChange(field="description", before="old", after="new")]


def test_an_update_that_changes_no_value_records_nothing() -> None:
    same = experiment(description="same")
    assert experiment_updated(LOCAL_ACTOR, same, same, {"description"}) is None


def test_create_and_delete_hold_the_whole_experiment() -> None:
    draft = experiment()
    created = experiment_created(LOCAL_ACTOR, draft)
    deleted = experiment_deleted(LOCAL_ACTOR, draft)
    assert (created.action, created.before, created.changes) == ("experiment.create", None, [])
    assert created.after == draft.model_dump(mode="json")
    assert (deleted.action, deleted.after, deleted.before) == (
        "experiment.delete",
        None,
        draft.model_dump(mode="json"),
    )


def override(user: str = "qa", variant: str = "control") -> Override:
    return Override(
        experiment_id=experiment().id,
        user_id=user,
        variant=variant,
        variant_id=uuid4(),
        created_at=NOW,
        updated_at=NOW,
    )


def test_override_entries_belong_to_the_experiments_history() -> None:
    forced = override_set(LOCAL_ACTOR, None, override())
    moved = override_set(LOCAL_ACTOR, override(), override(variant="treatment"))
    deleted = override_deleted(LOCAL_ACTOR, override(variant="treatment"))
    for entry in (forced, moved, deleted):
        assert entry is not None
        assert (entry.entity_type, entry.entity_id) == ("override", "qa")
        assert (entry.parent_type, entry.parent_id) == ("experiment", str(experiment().id))
    assert forced is not None
    assert moved is not None
    assert (forced.action, forced.before, forced.after) == (
        "override.set",
        None,
        {"user_id": "qa", "variant": "control"},
    )
    assert moved.changes == [FieldChange(field="variant", before="control", after="treatment")]
    assert (deleted.action, deleted.before, deleted.after) == (
        "override.delete",
        {"user_id": "qa", "variant": "treatment"},
        None,
    )
    # Forcing the variant already forced (a new variant_id, a later updated_at) records nothing.
    assert override_set(LOCAL_ACTOR, override(), override()) is None


def test_removed_overrides_are_listed_on_the_update_and_the_delete() -> None:
    before, after = experiment(), experiment(description="new")
    removed = [override("a"), override("b", "treatment")]
    update = experiment_updated(LOCAL_ACTOR, before, after, {"variants"}, removed_overrides=removed)
    assert update is not None
    listed = [{"user_id": "a", "variant": "control"}, {"user_id": "b", "variant": "treatment"}]
    assert (update.before, update.after) == (
        {"variants": [], "overrides": listed},
        {"variants": [], "overrides": []},
    )
    assert update.changes == [FieldChange(field="overrides", before=listed, after=[])]
    deleted = experiment_deleted(LOCAL_ACTOR, before, removed_overrides=removed)
    assert deleted.before is not None
    assert deleted.before["overrides"] == listed


def group(**fields: Any) -> SavedGroup:
    data: dict[str, Any] = {
        "id": uuid4(),
        "key": "vips",
        "values": ["ann"],
        "created_at": NOW,
        "updated_at": NOW,
    }
    return SavedGroup.model_validate({**data, **fields})


def test_saved_group_entries_hold_the_group() -> None:
    old = group()
    new = old.model_copy(update={"values": ["ann", 7], "updated_at": NOW + timedelta(seconds=1)})
    created, deleted = saved_group_created(SYSTEM_ACTOR, old), saved_group_deleted(SYSTEM_ACTOR, new)
    updated = saved_group_updated(SYSTEM_ACTOR, old, new)
    assert updated is not None
    assert [(e.action, e.entity_type, e.entity_id) for e in (created, updated, deleted)] == [
        ("saved_group.create", "saved_group", str(old.id)),
        ("saved_group.update", "saved_group", str(old.id)),
        ("saved_group.delete", "saved_group", str(old.id)),
    ]
    assert (created.before, created.after) == (None, old.model_dump(mode="json"))
    assert updated.changes == [FieldChange(field="values", before=["ann"], after=["ann", 7])]
    assert (deleted.before, deleted.after) == (new.model_dump(mode="json"), None)
    # Same key and values: only updated_at moved, nothing to record.
    assert (
        saved_group_updated(SYSTEM_ACTOR, old, old.model_copy(update={"updated_at": NOW + timedelta(1)}))
        is None
    )


def holdout(**fields: Any) -> Holdout:
    data: dict[str, Any] = {
        "id": UUID("00000000-0000-4000-8000-000000000002"),
        "name": "h",
        "salt": "s",
        "percent": 0.1,
        "surfaces": None,
        "all_surfaces": True,
        "status": Status.DRAFT,
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": None,
        "completed_at": None,
    }
    return Holdout.model_validate({**data, **fields})


@pytest.mark.parametrize(
    ("current", "target", "action"),
    [
        (Status.DRAFT, Status.RUNNING, "holdout.start"),
        (Status.RUNNING, Status.PAUSED, "holdout.pause"),
        (Status.PAUSED, Status.RUNNING, "holdout.resume"),
        (Status.RUNNING, Status.COMPLETED, "holdout.complete"),
        (Status.PAUSED, Status.COMPLETED, "holdout.complete"),
    ],
)
def test_holdouts_transitions_have_the_experiments_verbs(
    current: Status, target: Status, action: str
) -> None:
    assert transition_action(current, target, "holdout") == action
    entry = holdout_status_changed(LOCAL_ACTOR, holdout(status=current), holdout(status=target))
    assert entry is not None
    assert (entry.action, entry.entity_type, entry.entity_id) == (action, "holdout", str(holdout().id))
    assert entry.changes == [FieldChange(field="status", before=current.value, after=target.value)]
    assert holdout_status_changed(LOCAL_ACTOR, holdout(status=current), holdout(status=current)) is None
    created = holdout_created(LOCAL_ACTOR, holdout())
    assert (created.action, created.before, created.after) == (
        "holdout.create",
        None,
        holdout().model_dump(mode="json"),
    )


def test_namespace_entries_say_which_way_the_buckets_moved() -> None:
    exp = experiment()
    taken = namespace_share_changed(LOCAL_ACTOR, exp, 0, 5000)
    released = namespace_share_changed(LOCAL_ACTOR, exp, 5000, 0)
    assert taken is not None
    assert released is not None
    assert (taken.action, taken.entity_type, taken.entity_id) == (
        "namespace.allocate",
        "namespace",
        "checkout",
    )
    assert (taken.parent_type, taken.parent_id) == ("experiment", str(exp.id))
    assert taken.after == {"buckets": 5000, "share": 0.5}
    assert released.action == "namespace.release"
    assert namespace_share_changed(LOCAL_ACTOR, exp, 10, 10) is None


# --- the actor of a request ------------------------------------------------------------------------


def event(claims: dict[str, Any] | None, **headers: str) -> dict[str, Any]:
    context: dict[str, Any] = {"requestId": "req-1"}
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": ["abtest/admin"]}}
    return {"requestContext": context, "headers": headers}


def test_the_actor_is_the_tokens_subject() -> None:
    actor = request_actor(event({"sub": "alice", "client_id": "app-1"}))
    assert actor == Actor(type="user", id="alice", scopes=("abtest/admin",), request_id="req-1")


@pytest.mark.parametrize(
    ("claims", "kind", "who"),
    [
        ({"sub": "app-1", "client_id": "app-1"}, "client", "app-1"),  # Cognito client credentials
        ({"client_id": "app-2"}, "client", "app-2"),
        ({"username": "bob"}, "user", "bob"),
        ({"sub": "  "}, "user", "unknown"),
        ({}, "user", "unknown"),
    ],
)
def test_tokens_without_a_subject_fall_back_to_client_id_then_username(
    claims: dict[str, Any], kind: str, who: str
) -> None:
    actor = request_actor(event(claims))
    assert (actor.type, actor.id) == (kind, who)


def test_without_an_authorizer_the_actor_is_local() -> None:
    actor = request_actor(event(None))
    assert (actor.type, actor.id, actor.request_id, actor.scopes) == ("local", "local", "req-1", ())


def test_the_change_reason_header_is_kept_trimmed() -> None:
    assert request_actor(event(None, **{"x-change-reason": "  QA asked  "})).reason == "QA asked"
    assert request_actor(event(None, **{"X-Change-Reason": "upper"})).reason == "upper"
    assert request_actor(event(None, **{"x-change-reason": "   "})).reason is None


@pytest.mark.parametrize("reason", ["x" * 1001, "nul\x00"])
def test_an_unusable_change_reason_is_a_422_naming_the_header(reason: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        request_actor(event({"sub": "a"}, **{"x-change-reason": reason}))
    assert raised.value.field == "X-Change-Reason"


# --- instants and cursors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-01T10:00:00Z", NOW),
        ("2026-05-01T12:00:00+02:00", NOW),
        ("2026-05-01T12:00:00 02:00", NOW),  # "+" sent unencoded in a query string
        ("2026-05-01T10:00:00.000+00:00", NOW),
    ],
)
def test_instants_need_an_offset(text: str, expected: datetime) -> None:
    assert parse_instant(text, "since") == expected


@pytest.mark.parametrize("text", ["2026-05-01T10:00:00", "2026-05-01", "yesterday", "1714557600", ""])
def test_an_instant_without_offset_or_unparseable_names_its_parameter(text: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_instant(text, "until")
    assert raised.value.field == "until"
