-- Rollups: per-user and per-variant sufficient statistics, folded in by the scheduled rollup.
--
-- Each event row records the id of the transaction that wrote it (xid8). A rollup run processes the
-- rows of every transaction with an id in [previous horizon, new horizon), where the new horizon is the
-- xmin of its own snapshot: every transaction below it has finished, so each event falls in exactly
-- one run's window, however transactions interleave or commit out of order.

ALTER TABLE exposures ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE conversions ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX exposures_txid_idx ON exposures (txid);
CREATE INDEX conversions_txid_idx ON conversions (txid);
CREATE INDEX exposures_experiment_txid_idx ON exposures (experiment_id, txid);
CREATE INDEX conversions_experiment_txid_idx ON conversions (experiment_id, txid);

CREATE TABLE rollup_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    horizon    xid8 NOT NULL DEFAULT '0'::xid8,
    runs       bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_state DEFAULT VALUES;

-- One row per assigned user who has any event: exposures > 0 means the user is in the analysis.
CREATE TABLE rollup_users (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    user_id       text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    exposures     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, user_id)
);

-- Per user and metric: how many conversions and their total value.
CREATE TABLE rollup_user_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    user_id       text NOT NULL,
    metric_name   text NOT NULL,
    variant_id    uuid NOT NULL REFERENCES variants (id),
    count         bigint NOT NULL,
    total         double precision NOT NULL,
    PRIMARY KEY (experiment_id, user_id, metric_name)
);

-- Per variant: exposure events and exposed users.
CREATE TABLE rollup_variants (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    exposures     bigint NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant_id)
);

-- Per variant and metric, over exposed users only: conversion events, sum and sum of squares of
-- per-user totals, and converting users.
CREATE TABLE rollup_metrics (
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    variant_id    uuid NOT NULL REFERENCES variants (id),
    metric_name   text NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    sum           double precision NOT NULL DEFAULT 0,
    sum_squares   double precision NOT NULL DEFAULT 0,
    users         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, variant_id, metric_name)
);
