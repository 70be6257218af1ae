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
SELECT pg_advisory_xact_lock(7412039552);  -- no rollup run folds meanwhile

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

-- The kept definitions whose rows an experiment's rollups hold (for its whole history): those it pinned
-- when it started, and those a restart rebuilt. A definition pinned later (a secondary metric added to
-- a running experiment) is not built until the restart it triggers is under way: until then reads
-- compute it from the raw events, as they do percentile caps.
CREATE TABLE IF NOT EXISTS rollup_definitions_built (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    name          text NOT NULL,
    PRIMARY KEY (experiment_id, name)
);

-- A rollup run with a time budget (RollupRepository.roll_up) may walk only the first days of an
-- experiment's pending events and keep the rest for the next run: walked_until is the last UTC day it
-- recorded, walked_below the horizon of that run (its events below it dated up to walked_until are
-- folded; the later days of those, and anything from walked_below on, are not). NULL: nothing walked.
-- restart: the experiment's rollups are to be started over by the next run that folds it.
ALTER TABLE rollup_failures ADD COLUMN IF NOT EXISTS walked_until date;
ALTER TABLE rollup_failures ADD COLUMN IF NOT EXISTS walked_below xid8;
ALTER TABLE rollup_failures ADD COLUMN IF NOT EXISTS restart boolean NOT NULL DEFAULT false;

-- Every row the rollup keeps of one experiment, in every table it fills per experiment (a table that
-- does not exist yet is skipped: later migrations' tables are listed here too). Called by the rollup
-- run, under its advisory lock, inside the experiment's savepoint, when it starts the experiment over.
CREATE OR REPLACE FUNCTION abtest_clear_rollups(experiment uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY[
        'snapshot_bandit_metrics', 'snapshot_bandit_variants',
        'rollup_bandit_period_metrics', 'rollup_bandit_period_variants',
        'snapshot_definitions', 'rollup_definitions', 'rollup_user_definitions', 'rollup_definitions_built',
        'snapshot_slice_metrics', 'snapshot_slice_variants', 'rollup_slice_metrics', 'rollup_slice_variants',
        'snapshot_metrics', 'snapshot_variants', 'rollup_user_metrics', 'rollup_users',
        'rollup_metrics', 'rollup_variants'
    ] LOOP
        IF to_regclass(tbl) IS NOT NULL THEN
            EXECUTE format('DELETE FROM %I WHERE experiment_id = $1', tbl) USING experiment;
        END IF;
    END LOOP;
END
$$;

-- Start an experiment's rollups over: mark it (restart, pending from transaction id 0), and the next
-- rollup run that folds it drops every row it keeps of it (abtest_clear_rollups) and rebuilds them, every
-- day's snapshot included, from the raw events, which are untouched; reads fold all its events from the
-- raw tables meanwhile (exact, slower). Takes no lock and deletes nothing, so a request may call it
-- (a secondary metric the rollup keeps added to a running experiment) whatever a run is doing. Not a
-- failure: failures 0, which raises no alert.
CREATE OR REPLACE FUNCTION abtest_restart_rollups(experiment uuid, reason text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO rollup_failures (experiment_id, since, error, failures, restart)
    VALUES (experiment, '0'::xid8, reason, 0, true)
    ON CONFLICT (experiment_id) DO UPDATE
    SET since = '0'::xid8, error = EXCLUDED.error, failures = 0, restart = true, failed_at = now(),
        walked_until = NULL, walked_below = NULL;
$$;

-- Experiments that already pinned such a definition and have rolled-up users: start over at once
-- (their rows dropped here, under the rollup's lock), so reads fold their raw events and the rollup
-- builds the new tables for their whole history (days included). The others have nothing to
-- rebuild: their pinned definitions count as built (from their first event on).
CREATE TEMPORARY VIEW kept_pins AS
SELECT e.id AS experiment_id, p.key AS name
FROM experiments e
CROSS JOIN LATERAL jsonb_each_text(e.pinned_metrics) p
JOIN metric_definition_versions v ON v.name = p.key AND v.version = p.value::int
WHERE COALESCE(v.definition->'capping'->>'type', '') <> 'percentile'
  AND (v.definition->>'type' = 'ratio'
       OR (v.definition->>'type' IN ('proportion', 'mean')
           AND (jsonb_typeof(v.definition->'window_hours') = 'number'
                OR v.definition->'capping'->>'type' = 'absolute')));

SELECT abtest_clear_rollups(e.id), abtest_restart_rollups(e.id, 'rebuilt by migration 0018 (defined metrics)')
FROM experiments e
WHERE EXISTS (SELECT 1 FROM rollup_users u WHERE u.experiment_id = e.id)
  AND EXISTS (SELECT 1 FROM kept_pins k WHERE k.experiment_id = e.id);

INSERT INTO rollup_definitions_built (experiment_id, name)
SELECT k.experiment_id, k.name FROM kept_pins k
WHERE NOT EXISTS (SELECT 1 FROM rollup_users u WHERE u.experiment_id = k.experiment_id)
ON CONFLICT DO NOTHING;

DROP VIEW kept_pins;
