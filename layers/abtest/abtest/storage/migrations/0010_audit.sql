-- The audit log (issue 12): one row per admin change, appended in the transaction of the change it
-- records (abtest/storage/audit.py), so a change and its entry commit or roll back together.
--
-- id is a bigint identity, not a UUID: every entry of one transaction shares occurred_at (now(), the
-- transaction's time, as experiments.updated_at), and the identity keeps their insertion order, so the
-- keyset (occurred_at, id) reads "experiment.start, then namespace.allocate" in the order they were
-- written. entity_id and parent_id are text: entities are experiments (UUIDs) but also namespaces
-- (surface names) and, later, whatever other writers record.
--
-- changes is the field-level diff of before and after computed by abtest/domain/audit.py (timestamps
-- such as updated_at excluded): [{"field": ..., "before": ..., "after": ...}].
CREATE TABLE audit_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor_type   text NOT NULL,
    actor_id     text NOT NULL,
    actor_scopes text[] NOT NULL DEFAULT '{}',
    request_id   text,
    entity_type  text NOT NULL,
    entity_id    text NOT NULL,
    parent_type  text,
    parent_id    text,
    action       text NOT NULL,
    before       jsonb,
    after        jsonb,
    changes      jsonb NOT NULL DEFAULT '[]',
    reason       text,
    CONSTRAINT audit_events_actor_type_check CHECK (actor_type IN ('user', 'client', 'system', 'local')),
    CONSTRAINT audit_events_actor_id_check CHECK (char_length(actor_id) BETWEEN 1 AND 256),
    CONSTRAINT audit_events_action_check CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    CONSTRAINT audit_events_entity_type_check CHECK (entity_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT audit_events_entity_id_check CHECK (char_length(entity_id) BETWEEN 1 AND 256),
    CONSTRAINT audit_events_parent_check CHECK ((parent_type IS NULL) = (parent_id IS NULL)),
    CONSTRAINT audit_events_changes_check CHECK (jsonb_typeof(changes) = 'array'),
    CONSTRAINT audit_events_reason_check CHECK (char_length(reason) <= 1000)
);

-- The two reads, newest first with the keyset (occurred_at, id): one entity's history (an
-- experiment's own entries and those whose parent it is, such as its namespace allocations) ...
CREATE INDEX audit_events_entity_idx ON audit_events (entity_type, entity_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_parent_idx ON audit_events (parent_type, parent_id, occurred_at DESC, id DESC)
    WHERE parent_id IS NOT NULL;
-- ... and the feed, by time and by actor (other filters ride on these).
CREATE INDEX audit_events_time_idx ON audit_events (occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, occurred_at DESC, id DESC);

-- Append-only: the service never updates or deletes an entry, and the role that runs the migrations
-- (in AWS the application's role too) may not either. A superuser ignores privileges, and an owner
-- could grant them back: this guards against the application's own mistakes, not against the owner.
-- TRUNCATE stays granted on purpose: the tests empty every table between tests, also as a
-- non-superuser owner (TEST_DATABASE_URL); the service never truncates anything.
REVOKE UPDATE, DELETE ON audit_events FROM PUBLIC;
REVOKE UPDATE, DELETE ON audit_events FROM CURRENT_USER;
