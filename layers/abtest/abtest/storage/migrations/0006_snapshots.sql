-- Daily snapshots: the cumulative per-variant sufficient statistics of every experiment, one row per
-- UTC day (results over time, /results/timeseries, the HTML report).
--
-- A snapshot row is a copy of the experiment's rollup_variants / rollup_metrics rows (exact per user)
-- taken by the rollup after it recomputed, for that UTC day, the users with new events dated that day
-- from their raw events up to the end of the day (attribution from the first exposure, as in 0004).
-- Days are walked in order; an event dated before the experiment's latest snapshot day counts from
-- that latest day on (days before the latest are never rewritten). Each rollup writes only the days
-- and experiments its new events touch. Applied after 0004 (0005 is another branch's).

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
    unattributed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, day, variant_id, metric_name)
);

-- History: rather than file everything rolled up so far under today's date, start the rollups over
-- (as 0004 does) so that the next run rebuilds them, and every experiment's daily snapshots from its
-- first event on, from the raw events, which are untouched. Right after 0004 the tables are already
-- empty and the horizon 0 (this costs nothing more); on a database where rollups ran since 0004, the
-- next run recomputes every user once. Reads stay exact meanwhile (rollups plus the tail above the
-- horizon).
TRUNCATE rollup_users, rollup_user_metrics, rollup_variants, rollup_metrics;
UPDATE rollup_state SET horizon = '0'::xid8, updated_at = now();
