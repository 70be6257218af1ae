-- Metric definitions (issue 22): what an event metric means (type, direction, capping, window) and the
-- roles experiments give them (goals, guardrails, secondary) with their decision settings.
--
-- A definition is versioned: metric_definitions holds each live name and its current version, and
-- metric_definition_versions every version ever written (PUT appends one). The versions are never
-- updated nor deleted, not even when the definition is deleted, so an experiment that pinned a version
-- when it started (experiments.pinned_metrics: {"name": version}) is analysed the same way for ever.
-- A deleted name that is created again continues its numbering.
CREATE TABLE metric_definition_versions (
    name        text NOT NULL,
    version     integer NOT NULL,
    definition  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version),
    CONSTRAINT metric_definition_versions_version_check CHECK (version >= 1),
    CONSTRAINT metric_definition_versions_definition_check CHECK (jsonb_typeof(definition) = 'object')
);

CREATE TABLE metric_definitions (
    name        text PRIMARY KEY,
    version     integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metric_definitions_name_check CHECK (name ~ '^[a-z][a-z0-9_.]{0,63}$'),
    CONSTRAINT metric_definitions_version_fkey FOREIGN KEY (name, version)
        REFERENCES metric_definition_versions (name, version)
);

-- Roles and decision settings of an experiment (NULL: none, analysed as before), and the definition
-- versions pinned when it started.
ALTER TABLE experiments ADD COLUMN metric_roles jsonb;
ALTER TABLE experiments ADD COLUMN decision_settings jsonb;
ALTER TABLE experiments ADD COLUMN pinned_metrics jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE experiments ADD CONSTRAINT experiments_pinned_metrics_check
    CHECK (jsonb_typeof(pinned_metrics) = 'object');
