-- A bandit's results over time, period-weighted (issue 21; docs/bandits.md, "Results over time").
--
-- rollup_bandit_period_variants / rollup_bandit_period_metrics: a bandit's running statistics per
-- period (the period that enrolled each user: assignments.bandit_period, NULL counting as 1), kept by
-- the scheduled rollup with the same fold as the per-variant totals (abtest.storage.bandit_series).
-- At most MAX_BANDIT_PERIODS x MAX_VARIANTS (x metrics) rows per experiment.
--
-- snapshot_bandit_metrics: at the end of each snapshot day, the period-weighted per-variant statistics
-- of every metric, as sufficient statistics (abtest.analysis.bandits.period_weighted), shaped like
-- snapshot_metrics; snapshot_bandit_variants: the same day's users each arm should have under the
-- weights in force when they were enrolled (Σ_t N_t · weight_(a,t), the SRM's expectation). The series
-- reads one row per day and variant (and metric asked for), never days x periods.
--
-- Bandits that already hold rollups and snapshots get them rebuilt, as migration 0011 did: their rollup
-- rows (per variant, per user, per slice) and daily snapshots are deleted and they are marked pending
-- from transaction id 0 in rollup_failures, so reads fold all their events from the raw tables until
-- the next rollup run rebuilds rollups, per-period statistics and every daily snapshot from them (the
-- run removes the mark). Fixed-allocation experiments are untouched. Takes the rollup's advisory lock.

SELECT pg_advisory_xact_lock(7412039552);

CREATE TABLE IF NOT EXISTS rollup_bandit_period_variants (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    period        integer NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    exposures     bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, period, variant_id)
);

CREATE TABLE IF NOT EXISTS rollup_bandit_period_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    period        integer NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    sum           double precision NOT NULL DEFAULT 0,
    sum_squares   double precision NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    unattributed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, period, variant_id, metric_name)
);

CREATE TABLE IF NOT EXISTS snapshot_bandit_variants (
    experiment_id  uuid NOT NULL REFERENCES experiments (id),
    day            date NOT NULL,
    variant_id     uuid NOT NULL REFERENCES variants (id),
    expected_users double precision NOT NULL,
    PRIMARY KEY (experiment_id, day, variant_id)
);

CREATE TABLE IF NOT EXISTS snapshot_bandit_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    day           date NOT NULL,
    count         bigint NOT NULL,
    sum           double precision NOT NULL,
    sum_squares   double precision NOT NULL,
    users         bigint NOT NULL,
    unattributed  bigint NOT NULL,
    PRIMARY KEY (experiment_id, day, variant_id, metric_name)
);

CREATE TEMPORARY TABLE rebuilt_bandits (experiment_id uuid PRIMARY KEY) ON COMMIT DROP;

INSERT INTO rebuilt_bandits
SELECT e.id FROM experiments e
WHERE e.allocation ->> 'type' = 'bandit'
  AND (EXISTS (SELECT 1 FROM rollup_users u WHERE u.experiment_id = e.id)
       OR EXISTS (SELECT 1 FROM snapshot_variants s WHERE s.experiment_id = e.id)
       OR EXISTS (SELECT 1 FROM rollup_failures f WHERE f.experiment_id = e.id));

DELETE FROM snapshot_bandit_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM snapshot_bandit_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_bandit_period_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_bandit_period_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM snapshot_slice_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM snapshot_slice_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_slice_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_slice_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM snapshot_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM snapshot_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_user_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_users WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_metrics WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
DELETE FROM rollup_variants WHERE experiment_id IN (SELECT experiment_id FROM rebuilt_bandits);
INSERT INTO rollup_failures (experiment_id, since, error, failures)
SELECT experiment_id, '0'::xid8, 'rebuilt by migration 0019 (bandit series)', 0 FROM rebuilt_bandits
ON CONFLICT (experiment_id) DO UPDATE SET since = '0'::xid8;
