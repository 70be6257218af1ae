-- Per-user overrides (issue 12, item 3): a forced user is served the override's variant while the
-- experiment runs, is never stored as an assignment, and their exposures and conversions go to their
-- own tables, which the rollup, /metrics and /results never read (so forced users stay out of the
-- analysis by construction, as in GrowthBook and Statsig).

-- An experiment's overrides. Deleting a draft deletes them (a draft has no history); replacing a
-- draft's variants (PATCH variants deletes and recreates them) deletes the overrides that named them.
CREATE TABLE experiment_overrides (
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, user_id),
    CONSTRAINT experiment_overrides_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256)
);
-- /recommendations looks up a user's overrides across the running experiments of a surface.
CREATE INDEX experiment_overrides_user_idx ON experiment_overrides (user_id, created_at);

-- Exposures and conversions of forced users: recorded, never analysed. Same shape and idempotency
-- (experiment_id, event_id) as exposures and conversions; no cascade from experiments: history is kept.
CREATE TABLE override_exposures (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    user_id       text NOT NULL,
    event_id      text,
    context       jsonb,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    payload_hash  text,
    CONSTRAINT override_exposures_event_id_key UNIQUE (experiment_id, event_id),
    CONSTRAINT override_exposures_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT override_exposures_event_id_check CHECK (char_length(event_id) BETWEEN 1 AND 128)
);
CREATE INDEX override_exposures_experiment_user_idx ON override_exposures (experiment_id, user_id);

CREATE TABLE override_conversions (
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
    payload_hash  text,
    CONSTRAINT override_conversions_event_id_key UNIQUE (experiment_id, event_id),
    CONSTRAINT override_conversions_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT override_conversions_metric_name_check CHECK (metric_name ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT override_conversions_event_id_check CHECK (char_length(event_id) BETWEEN 1 AND 128),
    CONSTRAINT override_conversions_value_check CHECK (value BETWEEN -1e9 AND 1e9),
    CONSTRAINT override_conversions_metadata_check CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object')
);
CREATE INDEX override_conversions_experiment_user_idx ON override_conversions (experiment_id, user_id);
