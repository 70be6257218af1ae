-- Defined metrics in the rollup (issue 22): the per-user values of the metric definitions an experiment
-- has pinned whose statistics do not move as data arrive (a proportion, mean or ratio with an absolute
-- cap, a conversion window or both, and every ratio: abtest.analysis.defined_rollup.KeptDefinition), kept
-- by the scheduled rollup exactly as rollup_user_metrics / rollup_metrics are, with daily snapshots, so
-- /metrics, /results, the time series and the report read the same numbers. Percentile caps and
-- quantiles stay computed when results are read (they move with every new user).
--
-- rollup_user_definitions: per exposed user and definition, the conversions that count (inside the
--   window, at or after the first exposure) of its metric (x; a ratio's numerator) and, for a ratio,
--   of its denominator (y): count of x, total of x (before the cap), total of y. No row: all zero.
-- rollup_definitions: per variant and definition, over exposed users: counted conversions, users with
--   one, and the sums of the per-user values after the cap (x, x², y, y², x·y).
-- snapshot_definitions: the same, at the end of every UTC day the rollup walked.
CREATE TABLE IF NOT EXISTS rollup_user_definitions (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    user_id       text NOT NULL,
    name          text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    count         bigint NOT NULL,
    x             double precision NOT NULL,
    y             double precision NOT NULL,
    PRIMARY KEY (experiment_id, user_id, name)
);

CREATE TABLE IF NOT EXISTS rollup_definitions (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    name          text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    sum_x         double precision NOT NULL DEFAULT 0,
    sum_x2        double precision NOT NULL DEFAULT 0,
    sum_y         double precision NOT NULL DEFAULT 0,
    sum_y2        double precision NOT NULL DEFAULT 0,
    sum_xy        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant_id, name)
);

CREATE TABLE IF NOT EXISTS snapshot_definitions (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    name          text NOT NULL,
    day           date NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    sum_x         double precision NOT NULL DEFAULT 0,
    sum_x2        double precision NOT NULL DEFAULT 0,
    sum_y         double precision NOT NULL DEFAULT 0,
    sum_y2        double precision NOT NULL DEFAULT 0,
    sum_xy        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, day, variant_id, name)
);

-- A rollup run with a time budget (RollupRepository.roll_up) may walk only the first days of an
-- experiment's pending events and keep the rest for the next run: walked_until is the last UTC day it
-- recorded, walked_below the horizon of that run (its events below it dated up to walked_until are
-- folded; the later days of those, and anything from walked_below on, are not). NULL: nothing walked.
ALTER TABLE rollup_failures ADD COLUMN IF NOT EXISTS walked_until date;
ALTER TABLE rollup_failures ADD COLUMN IF NOT EXISTS walked_below xid8;

-- Start an experiment's rollups over: its rolled-up rows and daily snapshots go, and rollup_failures
-- marks it pending from transaction id 0 (as migration 0011 does), so reads fold all its events from the
-- raw tables (exact, slower) until the next rollup run rebuilds everything, every day's snapshot
-- included, from the raw events, which are untouched. Used when an experiment gains a kept definition
-- while it has events (a secondary metric added to a running experiment). Takes the rollup's advisory
-- lock: no run folds the experiment meanwhile. Every table the rollup fills per experiment is listed
-- here; a migration that adds one replaces this function.
CREATE OR REPLACE FUNCTION abtest_restart_rollups(experiment uuid, reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412039552);
    DELETE FROM snapshot_definitions WHERE experiment_id = experiment;
    DELETE FROM rollup_definitions WHERE experiment_id = experiment;
    DELETE FROM rollup_user_definitions WHERE experiment_id = experiment;
    DELETE FROM snapshot_slice_metrics WHERE experiment_id = experiment;
    DELETE FROM snapshot_slice_variants WHERE experiment_id = experiment;
    DELETE FROM rollup_slice_metrics WHERE experiment_id = experiment;
    DELETE FROM rollup_slice_variants WHERE experiment_id = experiment;
    DELETE FROM snapshot_metrics WHERE experiment_id = experiment;
    DELETE FROM snapshot_variants WHERE experiment_id = experiment;
    DELETE FROM rollup_user_metrics WHERE experiment_id = experiment;
    DELETE FROM rollup_users WHERE experiment_id = experiment;
    DELETE FROM rollup_metrics WHERE experiment_id = experiment;
    DELETE FROM rollup_variants WHERE experiment_id = experiment;
    INSERT INTO rollup_failures (experiment_id, since, error, failures)
    VALUES (experiment, '0'::xid8, reason, 0)
    ON CONFLICT (experiment_id) DO UPDATE
    SET since = '0'::xid8, error = EXCLUDED.error, walked_until = NULL, walked_below = NULL;
END
$$;

-- Experiments that already pinned such a definition and have rolled-up users: start over, so the next
-- run fills the new tables for their whole history (days included). Others have nothing to rebuild.
SELECT abtest_restart_rollups(e.id, 'rebuilt by migration 0018 (defined metrics)')
FROM experiments e
WHERE EXISTS (SELECT 1 FROM rollup_users u WHERE u.experiment_id = e.id)
  AND EXISTS (
    SELECT 1 FROM jsonb_each_text(e.pinned_metrics) p
    JOIN metric_definition_versions v ON v.name = p.key AND v.version = p.value::int
    WHERE COALESCE(v.definition->'capping'->>'type', '') <> 'percentile'
      AND (v.definition->>'type' = 'ratio'
           OR (v.definition->>'type' IN ('proportion', 'mean')
               AND (jsonb_typeof(v.definition->'window_hours') = 'number'
                    OR v.definition->'capping'->>'type' = 'absolute')))
);
