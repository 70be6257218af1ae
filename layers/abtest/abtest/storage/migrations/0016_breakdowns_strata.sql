-- Breakdowns by user attribute and stratified assignment (issue 25, docs/breakdowns-and-strata.md).
--
-- experiments.dimensions: the attribute paths (at most 5) whose values are captured when a user is
--   enrolled; experiments.assignment: {"type": "hash"} (the published contract) or
--   {"type": "stratified", "stratum": PATH} (permuted blocks per stratum value).
-- assignments.dimensions: the values captured at enrollment, {"path": "value"}, never changed later.
-- dimension_values: the distinct values captured per experiment and dimension (the cap's memory).
-- stratum_counters: the next block position of each stratum, bumped in the enrollment's own statement.
-- abtest_block_slot: the block order of the contract (docs/assignment-contract.md, "Stratified").

ALTER TABLE experiments ADD COLUMN IF NOT EXISTS dimensions text[] NOT NULL DEFAULT '{}';
ALTER TABLE experiments ADD COLUMN IF NOT EXISTS assignment jsonb NOT NULL DEFAULT '{"type": "hash"}';
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS dimensions jsonb;

CREATE TABLE IF NOT EXISTS dimension_values (
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    dimension     text NOT NULL,
    value         text NOT NULL,
    PRIMARY KEY (experiment_id, dimension, value)
);

CREATE TABLE IF NOT EXISTS stratum_counters (
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    stratum       text NOT NULL,
    next          bigint NOT NULL,   -- users enrolled in the stratum so far = the next block position
    PRIMARY KEY (experiment_id, stratum)
);

-- The slot (0-based) that block position `pos` of block `block` takes: a Fisher-Yates shuffle of
-- 0..size-1 driven by SHA-256 of "salt:stratum:block:i" (first 4 bytes, big-endian, unsigned) modulo
-- i + 1, for i from size - 1 down to 1. abtest.contract.blocks is its Python mirror (golden vectors).
CREATE OR REPLACE FUNCTION abtest_block_slot(salt text, stratum text, block bigint, pos integer, size integer)
RETURNS integer LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    perm integer[] := ARRAY(SELECT generate_series(0, size - 1));
    i integer;
    j integer;
    t integer;
BEGIN
    FOR i IN REVERSE size - 1 .. 1 LOOP
        j := ((('x' || substr(encode(sha256(convert_to(
                  salt || ':' || stratum || ':' || block::text || ':' || i::text, 'UTF8')), 'hex'), 1, 8)
              )::bit(32)::bigint) % (i + 1))::integer;
        t := perm[i + 1];
        perm[i + 1] := perm[j + 1];
        perm[j + 1] := t;
    END LOOP;
    RETURN perm[pos + 1];
END
$$;

-- Per-slice sufficient statistics, kept by the scheduled rollup exactly as rollup_variants and
-- rollup_metrics are (deltas of the touched users' recomputed per-user state, grouped by the value
-- each user had at enrollment), and their daily snapshots (as snapshot_variants, snapshot_metrics).
CREATE TABLE IF NOT EXISTS rollup_slice_variants (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    dimension     text NOT NULL,
    value         text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    exposures     bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, dimension, value, variant_id)
);

CREATE TABLE IF NOT EXISTS rollup_slice_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    dimension     text NOT NULL,
    value         text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    sum           double precision NOT NULL DEFAULT 0,
    sum_squares   double precision NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    unattributed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, dimension, value, variant_id, metric_name)
);

CREATE TABLE IF NOT EXISTS snapshot_slice_variants (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    dimension     text NOT NULL,
    value         text NOT NULL,
    day           date NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    exposures     bigint NOT NULL,
    users         bigint NOT NULL,
    PRIMARY KEY (experiment_id, dimension, value, day, variant_id)
);

CREATE TABLE IF NOT EXISTS snapshot_slice_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    dimension     text NOT NULL,
    value         text NOT NULL,
    day           date NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    count         bigint NOT NULL,
    sum           double precision NOT NULL,
    sum_squares   double precision NOT NULL,
    users         bigint NOT NULL,
    unattributed  bigint NOT NULL,
    PRIMARY KEY (experiment_id, dimension, value, day, variant_id, metric_name)
);
