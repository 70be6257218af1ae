-- Hardening (issue 10): conversion value bound, payload hashes for idempotency, attribution from the
-- first exposure, and per-experiment failure isolation of the rollup.

-- |value| <= 1e9 (the API refuses more). NOT VALID: rows stored before the bound stay as they are
-- (the rollup isolates any experiment whose legacy values overflow); every new row is checked.
ALTER TABLE conversions ADD CONSTRAINT conversions_value_check
    CHECK (value BETWEEN -1e9 AND 1e9) NOT VALID;

-- The hash of what the client sent under an event_id: a retry must match it, or it is a 409
-- event_id_reused. NULL for rows stored before this migration (compared field by field instead).
ALTER TABLE conversions ADD COLUMN payload_hash text;
ALTER TABLE exposures ADD COLUMN payload_hash text;

-- The rollup recomputes each touched user from their raw events (first exposure, attributed and
-- unattributed conversions): per-user index probes.
CREATE INDEX exposures_experiment_user_idx ON exposures (experiment_id, user_id);
CREATE INDEX conversions_experiment_user_idx ON conversions (experiment_id, user_id);

-- Conversions that do not count (the user is not exposed, or they happened before the first exposure).
ALTER TABLE rollup_user_metrics ADD COLUMN unattributed bigint NOT NULL DEFAULT 0;
ALTER TABLE rollup_metrics ADD COLUMN unattributed bigint NOT NULL DEFAULT 0;

-- Experiments whose fold failed: their events from `since` on are not rolled up yet.
CREATE TABLE rollup_failures (
    experiment_id uuid PRIMARY KEY REFERENCES experiments (id),
    since         xid8 NOT NULL,
    error         text NOT NULL,
    failures      bigint NOT NULL DEFAULT 1,
    failed_at     timestamptz NOT NULL DEFAULT now()
);

-- The rollups were built under the old attribution rule (every conversion of an exposed user): start
-- them over; the next run recomputes every user from the raw events, which are untouched.
TRUNCATE rollup_users, rollup_user_metrics, rollup_variants, rollup_metrics;
UPDATE rollup_state SET horizon = '0'::xid8, updated_at = now();

-- The metric names of each experiment (at most MAX_METRICS_PER_EXPERIMENT, checked on ingestion), so
-- /metrics and /results stay bounded in size.
CREATE TABLE experiment_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    metric_name   text NOT NULL,
    PRIMARY KEY (experiment_id, metric_name)
);
INSERT INTO experiment_metrics SELECT DISTINCT experiment_id, metric_name FROM conversions;

-- Salts are unique per experiment (checked on create, under an advisory lock): a quick lookup.
CREATE INDEX experiments_salt_idx ON experiments (salt);
