-- Holdouts (docs/api/holdouts.md): a share of users kept away from every experiment of the surfaces a
-- holdout covers, compared with an equally sized measurement group that gets normal traffic.

CREATE TABLE holdouts (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    salt         text NOT NULL,
    percent      numeric(5, 4) NOT NULL,
    surfaces     text[],  -- NULL: every surface
    status       text NOT NULL DEFAULT 'draft',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    completed_at timestamptz,
    CONSTRAINT holdouts_name_key UNIQUE (name),
    CONSTRAINT holdouts_salt_key UNIQUE (salt),
    CONSTRAINT holdouts_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT holdouts_salt_check CHECK (char_length(salt) BETWEEN 1 AND 128),
    CONSTRAINT holdouts_percent_check CHECK (percent > 0 AND percent <= 0.10),
    CONSTRAINT holdouts_surfaces_check CHECK (surfaces IS NULL OR cardinality(surfaces) BETWEEN 1 AND 100),
    CONSTRAINT holdouts_status_check CHECK (status IN ('draft', 'running', 'paused', 'completed'))
);
CREATE INDEX holdouts_created_idx ON holdouts (created_at, id);

-- Members seen on a covered surface while the holdout ran, with the group the hash gave them.
CREATE TABLE holdout_members (
    holdout_id    uuid NOT NULL REFERENCES holdouts (id),
    user_id       text NOT NULL,
    "group"       text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (holdout_id, user_id),
    CONSTRAINT holdout_members_group_check CHECK ("group" IN ('holdout', 'measurement')),
    CONSTRAINT holdout_members_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256)
);
-- Conversions look members up by user.
CREATE INDEX holdout_members_user_idx ON holdout_members (user_id);

-- Conversions of holdout and measurement members who have no assignment in the experiment named
-- (idempotent by event_id per experiment, like conversions); read only by the holdout results.
CREATE TABLE holdout_conversions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    user_id       text NOT NULL,
    metric_name   text NOT NULL,
    value         double precision NOT NULL DEFAULT 1,
    event_id      text,
    metadata      jsonb,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    received_at   timestamptz NOT NULL DEFAULT now(),
    payload_hash  text,
    CONSTRAINT holdout_conversions_event_id_key UNIQUE (experiment_id, event_id),
    CONSTRAINT holdout_conversions_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT holdout_conversions_metric_name_check CHECK (metric_name ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT holdout_conversions_event_id_check CHECK (char_length(event_id) BETWEEN 1 AND 128),
    CONSTRAINT holdout_conversions_value_check CHECK (value BETWEEN -1e9 AND 1e9),
    CONSTRAINT holdout_conversions_metadata_check
        CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object')
);
CREATE INDEX holdout_conversions_user_idx ON holdout_conversions (user_id, experiment_id);
