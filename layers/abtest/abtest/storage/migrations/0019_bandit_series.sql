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
-- Bandits that already hold rollups and snapshots are started over at once (abtest_clear_rollups and
-- abtest_restart_rollups, migration 0018: their rows per variant, per user, per slice and their daily
-- snapshots are dropped here, under the rollup's lock, and they are marked pending from transaction
-- id 0), so reads fold all their events from the raw tables until the rollup has rebuilt rollups,
-- per-period statistics and every daily snapshot from them (over as many runs as its time budget
-- needs). Fixed-allocation experiments are untouched.

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
    -- metric first: a read of one metric's series is a range, not a scan of every metric's rows
    PRIMARY KEY (experiment_id, metric_name, period, variant_id)
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
    PRIMARY KEY (experiment_id, metric_name, day, variant_id)  -- one metric's days: a range
);

-- Starting a bandit over (abtest_restart_rollups, migration 0018) clears these tables too
-- (abtest_clear_rollups lists them).

-- Bandits with rolled-up users or daily snapshots (or pending ones): start over, so the next run fills
-- the per-period statistics and the period-weighted snapshots of their whole history.
SELECT abtest_clear_rollups(e.id), abtest_restart_rollups(e.id, 'rebuilt by migration 0019 (bandit series)')
FROM experiments e
WHERE e.allocation ->> 'type' = 'bandit'
  AND (EXISTS (SELECT 1 FROM rollup_users u WHERE u.experiment_id = e.id)
       OR EXISTS (SELECT 1 FROM snapshot_variants s WHERE s.experiment_id = e.id)
       OR EXISTS (SELECT 1 FROM rollup_failures f WHERE f.experiment_id = e.id));
