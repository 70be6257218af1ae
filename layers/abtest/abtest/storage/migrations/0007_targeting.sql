-- Targeting (issue 12): an experiment's condition on the user's attributes, and saved groups.
--
-- experiments.targeting is a GrowthBook condition ({} = everyone), checked by the domain before it is
-- written (abtest.domain.targeting) and applied at enrollment only. saved_groups are named lists of
-- values that conditions use through $inGroup / $notInGroup by key; a group named by the targeting of
-- an experiment that is not completed cannot be deleted or renamed.

ALTER TABLE experiments ADD COLUMN targeting jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE experiments ADD CONSTRAINT experiments_targeting_check CHECK (jsonb_typeof(targeting) = 'object');

CREATE TABLE saved_groups (
    id         uuid PRIMARY KEY,
    key        text NOT NULL,
    "values"   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT saved_groups_key_key UNIQUE (key),
    CONSTRAINT saved_groups_key_check CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
    CONSTRAINT saved_groups_values_check CHECK (jsonb_typeof("values") = 'array')
);
