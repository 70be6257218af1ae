-- Multi-armed bandits (issue 21; docs/bandits.md).
--
-- experiments.allocation: {"type": "fixed"} (every experiment so far) or {"type": "bandit", ...}.
-- A bandit's serving state lives on its experiment row: the number of the period now open
-- (bandit_period, from 1), when it opened (bandit_period_started_at: NULL until the experiment starts)
-- and the weights new users are bucketed with (bandit_weights, in variant order). A reweight locks the
-- row, closes the open period into bandit_periods and opens the next one.
-- assignments.bandit_period: the period whose weights chose the variant (NULL for fixed allocations).

ALTER TABLE experiments ADD COLUMN allocation jsonb NOT NULL DEFAULT '{"type": "fixed"}'::jsonb;
ALTER TABLE experiments ADD COLUMN bandit_period integer;
ALTER TABLE experiments ADD COLUMN bandit_period_started_at timestamptz;
ALTER TABLE experiments ADD COLUMN bandit_weights jsonb;
ALTER TABLE experiments ADD CONSTRAINT experiments_allocation_check
    CHECK (jsonb_typeof(allocation) = 'object' AND allocation ->> 'type' IN ('fixed', 'bandit'));
ALTER TABLE experiments ADD CONSTRAINT experiments_bandit_period_check
    CHECK (bandit_period IS NULL OR bandit_period >= 1);

ALTER TABLE assignments ADD COLUMN bandit_period integer;

-- One row per closed period: what the reweight at its end used and decided. (experiment, number) is
-- the primary key, so a period is closed once however many reweights race.
CREATE TABLE bandit_periods (
    experiment_id  uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    number         integer NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    -- Per arm (variant order) the period-weighted statistics of periods 1..number as
    -- {"users", "sum", "sum_squares"} (NULL when they were impossible: see error).
    arms           jsonb,
    -- Per arm the users enrolled in this period alone (exposed, as the analysis counts them).
    period_users   jsonb NOT NULL,
    p_best         jsonb,
    weights_before jsonb NOT NULL,
    weights_after  jsonb NOT NULL,
    outcome        text NOT NULL,
    error          text,
    trigger        text NOT NULL,
    PRIMARY KEY (experiment_id, number),
    CONSTRAINT bandit_periods_number_check CHECK (number >= 1),
    CONSTRAINT bandit_periods_outcome_check
        CHECK (outcome IN ('updated', 'not_enough_users', 'no_variance', 'invalid_statistics')),
    CONSTRAINT bandit_periods_trigger_check CHECK (trigger IN ('api', 'schedule'))
);
