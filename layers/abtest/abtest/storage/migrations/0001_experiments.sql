-- Experiments, their variants, and the raw event tables (assignments, exposures, conversions).
-- Constraints live here as well as in the pydantic models: the database is the last line of defence.

CREATE TABLE experiments (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    description        text NOT NULL DEFAULT '',
    status             text NOT NULL DEFAULT 'draft',
    traffic_allocation double precision NOT NULL DEFAULT 1,
    salt               text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    CONSTRAINT experiments_name_key UNIQUE (name),
    CONSTRAINT experiments_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT experiments_description_check CHECK (char_length(description) <= 2000),
    CONSTRAINT experiments_status_check CHECK (status IN ('draft', 'running', 'paused', 'completed')),
    CONSTRAINT experiments_traffic_check CHECK (traffic_allocation >= 0 AND traffic_allocation <= 1),
    CONSTRAINT experiments_salt_check CHECK (char_length(salt) BETWEEN 1 AND 128)
);

-- Listing pages through (created_at, id); the status filter is the common one.
CREATE INDEX experiments_status_created_idx ON experiments (status, created_at, id);
CREATE INDEX experiments_created_idx ON experiments (created_at, id);

CREATE TABLE variants (
    id            uuid PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    position      smallint NOT NULL,
    name          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    weight        double precision NOT NULL,
    config        jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT variants_name_key UNIQUE (experiment_id, name),
    CONSTRAINT variants_position_key UNIQUE (experiment_id, position),
    CONSTRAINT variants_position_check CHECK (position >= 0),
    CONSTRAINT variants_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    CONSTRAINT variants_description_check CHECK (char_length(description) <= 2000),
    CONSTRAINT variants_weight_check CHECK (weight >= 0 AND weight <= 1),
    CONSTRAINT variants_config_check CHECK (jsonb_typeof(config) = 'object')
);

-- Event tables reference experiments and variants without ON DELETE CASCADE: deleting an experiment
-- that has history fails instead of silently erasing it (only drafts, which have none, are deletable).
CREATE TABLE assignments (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    user_id       text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    assigned_at   timestamptz NOT NULL DEFAULT now(),
    context       jsonb,
    PRIMARY KEY (experiment_id, user_id),
    CONSTRAINT assignments_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256)
);

CREATE TABLE exposures (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    user_id       text NOT NULL,
    event_id      text,
    context       jsonb,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT exposures_event_id_key UNIQUE (experiment_id, event_id),
    CONSTRAINT exposures_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT exposures_event_id_check CHECK (char_length(event_id) BETWEEN 1 AND 128)
);
CREATE INDEX exposures_experiment_idx ON exposures (experiment_id, id);

CREATE TABLE conversions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    user_id       text NOT NULL,
    metric_name   text NOT NULL,
    value         double precision NOT NULL DEFAULT 1,
    event_id      text,
    metadata      jsonb,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    received_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT conversions_event_id_key UNIQUE (experiment_id, event_id),
    CONSTRAINT conversions_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT conversions_metric_name_check CHECK (metric_name ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT conversions_event_id_check CHECK (char_length(event_id) BETWEEN 1 AND 128),
    CONSTRAINT conversions_metadata_check CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object')
);
CREATE INDEX conversions_experiment_idx ON conversions (experiment_id, id);
