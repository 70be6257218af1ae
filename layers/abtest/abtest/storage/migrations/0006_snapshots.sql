-- Daily snapshots: the cumulative per-variant sufficient statistics of every experiment, one row per
-- UTC day (results over time, /results/timeseries, the HTML report).
--
-- A snapshot row is a copy of the experiment's rollup_variants / rollup_metrics rows (exact per user:
-- they are maintained from per-user running totals) taken by the rollup after it folded the events of
-- that day. Events are folded day by day in the order of their timestamps' UTC day; an event dated
-- before the experiment's latest snapshot day counts from that latest day on (days before the latest
-- are never rewritten). Each rollup writes only the days and experiments its new events touch.

CREATE TABLE snapshot_variants (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    day           date NOT NULL,
    exposures     bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, day, variant_id)
);

CREATE TABLE snapshot_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    day           date NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    sum           double precision NOT NULL DEFAULT 0,
    sum_squares   double precision NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, day, variant_id, metric_name)
);

-- What was rolled up before this migration becomes today's snapshot, so the latest snapshot of every
-- experiment always equals its rollup totals.
INSERT INTO snapshot_variants (experiment_id, variant_id, day, exposures, users)
SELECT experiment_id, variant_id, (now() AT TIME ZONE 'UTC')::date, exposures, users FROM rollup_variants;
INSERT INTO snapshot_metrics (experiment_id, variant_id, metric_name, day, count, sum, sum_squares, users)
SELECT experiment_id, variant_id, metric_name, (now() AT TIME ZONE 'UTC')::date, count, sum, sum_squares, users
FROM rollup_metrics;
