-- Event times bounded by the experiment (issue 19): from now on ingestion refuses an exposure or a
-- conversion dated before its experiment started (event_before_start) and an exposure dated more than
-- 5 minutes before its user's assignment (event_before_assignment), and moves an exposure dated less
-- than that before the assignment to the assignment's time (abtest.domain.event_times). This repairs a
-- database that already holds such events, and the rollups and daily snapshots they extended:
--
-- 1. Every stored event the rule would refuse is moved out of the tables the analysis reads, into
--    refused_events (the row as it was, as JSON, with the reason): history is kept, nothing counts.
--    That covers exposures, conversions, and the forced users' and holdout members' events.
-- 2. Every exposure the rule would move is moved to its user's assignment time.
-- 3. Each experiment whose events changed loses its rollup rows and daily snapshots, and is marked
--    pending from transaction id 0 in rollup_failures (the table whose meaning is "this experiment's
--    events from `since` on are not rolled up yet"): reads fold all its events from the raw tables
--    until the next rollup run rebuilds its rollups and snapshots from them, exactly as a fresh fold
--    would (the run removes the mark). Other experiments are untouched.
--
-- The statement is idempotent (a second run finds nothing to move) and takes the rollup's advisory lock,
-- so no run folds an experiment while it is repaired.

SELECT pg_advisory_xact_lock(7412039552);

CREATE TABLE IF NOT EXISTS refused_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL,        -- the table the row was in
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    reason        text NOT NULL,        -- event_before_start | event_before_assignment
    event         jsonb NOT NULL,       -- the row as it was
    refused_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TEMPORARY TABLE repaired_experiments (experiment_id uuid PRIMARY KEY) ON COMMIT DROP;

-- 1. Refused: dated before the experiment started (every table of events) ...
WITH moved AS (
    DELETE FROM exposures x USING experiments e
    WHERE e.id = x.experiment_id AND x.occurred_at < e.started_at
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'exposures', experiment_id, 'event_before_start', to_jsonb(moved) FROM moved;

WITH moved AS (
    DELETE FROM conversions x USING experiments e
    WHERE e.id = x.experiment_id AND x.occurred_at < e.started_at
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'conversions', experiment_id, 'event_before_start', to_jsonb(moved) FROM moved;

WITH moved AS (
    DELETE FROM override_exposures x USING experiments e
    WHERE e.id = x.experiment_id AND x.occurred_at < e.started_at
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'override_exposures', experiment_id, 'event_before_start', to_jsonb(moved) FROM moved;

WITH moved AS (
    DELETE FROM override_conversions x USING experiments e
    WHERE e.id = x.experiment_id AND x.occurred_at < e.started_at
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'override_conversions', experiment_id, 'event_before_start', to_jsonb(moved) FROM moved;

WITH moved AS (
    DELETE FROM holdout_conversions x USING experiments e
    WHERE e.id = x.experiment_id AND x.occurred_at < e.started_at
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'holdout_conversions', experiment_id, 'event_before_start', to_jsonb(moved) FROM moved;

-- ... and exposures dated more than 5 minutes before their user's assignment.
WITH moved AS (
    DELETE FROM exposures x USING assignments a
    WHERE a.experiment_id = x.experiment_id AND a.user_id = x.user_id
      AND x.occurred_at < a.assigned_at - interval '300 seconds'
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'exposures', experiment_id, 'event_before_assignment', to_jsonb(moved) FROM moved;

WITH moved AS (
    DELETE FROM override_exposures x USING assignments a
    WHERE a.experiment_id = x.experiment_id AND a.user_id = x.user_id
      AND x.occurred_at < a.assigned_at - interval '300 seconds'
    RETURNING x.*
)
INSERT INTO refused_events (source, experiment_id, reason, event)
SELECT 'override_exposures', experiment_id, 'event_before_assignment', to_jsonb(moved) FROM moved;

-- Only the analysed tables feed rollups and snapshots: their experiments are rebuilt.
INSERT INTO repaired_experiments
SELECT DISTINCT experiment_id FROM refused_events
WHERE source IN ('exposures', 'conversions')
  AND refused_at = now()  -- moved by this run (now() is the transaction's start)
ON CONFLICT DO NOTHING;

-- 2. Moved: exposures dated at most 5 minutes before their user's assignment.
WITH moved AS (
    UPDATE exposures x SET occurred_at = a.assigned_at FROM assignments a
    WHERE a.experiment_id = x.experiment_id AND a.user_id = x.user_id AND x.occurred_at < a.assigned_at
    RETURNING x.experiment_id
)
INSERT INTO repaired_experiments SELECT DISTINCT experiment_id FROM moved ON CONFLICT DO NOTHING;

UPDATE override_exposures x SET occurred_at = a.assigned_at FROM assignments a
WHERE a.experiment_id = x.experiment_id AND a.user_id = x.user_id AND x.occurred_at < a.assigned_at;

-- 3. Rebuilt: rollups and snapshots of the repaired experiments, from their raw events.
DELETE FROM snapshot_metrics WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
DELETE FROM snapshot_variants WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
DELETE FROM rollup_user_metrics WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
DELETE FROM rollup_users WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
DELETE FROM rollup_metrics WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
DELETE FROM rollup_variants WHERE experiment_id IN (SELECT experiment_id FROM repaired_experiments);
INSERT INTO rollup_failures (experiment_id, since, error, failures)
SELECT experiment_id, '0'::xid8, 'repaired by migration 0011 (event times)', 0 FROM repaired_experiments
ON CONFLICT (experiment_id) DO UPDATE SET since = '0'::xid8;
