-- Config schemas and phases (issue 24).
--
-- 1. config_schemas: each surface's JSON Schemas (draft 2020-12), immutable versions numbered from 1 per
--    surface; the newest is the surface's current schema. `mode` says how it was published (strict:
--    no live experiment violated it; warn: stored despite the `violations` it lists).
-- 2. Config versions: every variant config is version 1 when stored (a trigger copies it into
--    variant_config_versions); a change of a running or paused experiment's configs stores a new
--    version, or points back to an earlier one, and opens a phase.
-- 3. The precomputed serve-time check: each variant carries the schema version its config was checked
--    against and whether it passed (config_valid); serving reads it, never validates.
-- 4. Phases: experiments.phase is the current one (1 until a config changes); experiment_phases holds
--    phase 2 on (phase 1 starts with the experiment). Exposures record the phase they happened in and
--    whether the user was served control's config because theirs is invalid (config_fallback), both from
--    the database's state: the enrollment statement writes them, a trigger fills them for any other
--    writer. Existing rows: phase 1, no fallback (constant defaults: no table rewrite).
-- 5. The recommendations surface gets its schema (version 1): the keys the built-in recommender reads
--    (abtest.domain.recommender_config.RECOMMENDER_CONFIG_SCHEMA, which a test ties to this text).

CREATE TABLE IF NOT EXISTS config_schemas (
    surface     text NOT NULL CHECK (surface ~ '^[a-z][a-z0-9_.-]*$' AND char_length(surface) <= 64),
    version     integer NOT NULL CHECK (version >= 1),
    schema      jsonb NOT NULL,
    mode        text NOT NULL DEFAULT 'strict' CHECK (mode IN ('strict', 'warn')),
    violations  jsonb NOT NULL DEFAULT '[]',
    created_by  text NOT NULL DEFAULT 'system',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (surface, version)
);

ALTER TABLE variants
    ADD COLUMN IF NOT EXISTS config_version integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS schema_version integer,
    ADD COLUMN IF NOT EXISTS config_valid boolean NOT NULL DEFAULT true;

CREATE TABLE IF NOT EXISTS variant_config_versions (
    variant_id  uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version >= 1),
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (variant_id, version)
);
INSERT INTO variant_config_versions (variant_id, version, config)
SELECT id, 1, config FROM variants ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION abtest_variant_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO variant_config_versions (variant_id, version, config)
    VALUES (NEW.id, NEW.config_version, NEW.config) ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS variants_config_version ON variants;
CREATE TRIGGER variants_config_version AFTER INSERT ON variants
    FOR EACH ROW EXECUTE FUNCTION abtest_variant_config_version();

ALTER TABLE experiments ADD COLUMN IF NOT EXISTS phase integer NOT NULL DEFAULT 1 CHECK (phase >= 1);

CREATE TABLE IF NOT EXISTS experiment_phases (
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    phase         integer NOT NULL CHECK (phase >= 2),
    started_at    timestamptz NOT NULL DEFAULT now(),
    actor         jsonb NOT NULL,
    reason        text,
    config_versions jsonb NOT NULL,  -- variant name -> its config version in this phase
    PRIMARY KEY (experiment_id, phase)
);

ALTER TABLE exposures
    ADD COLUMN IF NOT EXISTS phase integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS config_fallback boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS exposures_phase_idx ON exposures (experiment_id, phase, user_id) WHERE phase > 1;
CREATE INDEX IF NOT EXISTS exposures_fallback_idx ON exposures (experiment_id, variant_id)
    WHERE config_fallback;

-- Existing rows are phase 1; a new row that does not say its phase (0, the default from here on) gets
-- it from the trigger. The enrollment statement (the hot path) writes both columns itself, so the
-- trigger runs only for the other writers (batch events).
ALTER TABLE exposures ALTER COLUMN phase SET DEFAULT 0;

CREATE OR REPLACE FUNCTION abtest_exposure_phase() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT e.phase INTO NEW.phase FROM experiments e WHERE e.id = NEW.experiment_id;
    SELECT NOT v.config_valid INTO NEW.config_fallback FROM variants v WHERE v.id = NEW.variant_id;
    NEW.phase := COALESCE(NEW.phase, 1);
    NEW.config_fallback := COALESCE(NEW.config_fallback, false);
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS exposures_phase ON exposures;
CREATE TRIGGER exposures_phase BEFORE INSERT ON exposures
    FOR EACH ROW WHEN (NEW.phase = 0) EXECUTE FUNCTION abtest_exposure_phase();

INSERT INTO config_schemas (surface, version, schema, created_by)
VALUES ('recommendations', 1, $schema$
{
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "RecommenderConfig",
    "description": "Variant config keys the built-in recommender reads; every key is optional.",
    "type": "object",
    "additionalProperties": false,
    "properties": {
        "lora_boost": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "Weight of profile similarity against popularity (0 = popularity only)"
        },
        "diversity": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "MMR trade-off (0 = pure relevance)"
        },
        "candidate_cap": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10000,
            "default": 200,
            "description": "How many top-scored items diversity re-ranks"
        }
    }
}
$schema$::jsonb, 'migration 0015')
ON CONFLICT DO NOTHING;
-- The recommendations surface's variants are stamped with version 1 and whether they pass it: the
-- schema's rules written in SQL (the checks before this migration enforced the same on every write, so
-- only configs older than them can fail). tests/integration/test_config_schemas.py runs this predicate
-- and the schema on the same configs.
UPDATE variants v SET schema_version = 1, config_valid = (
    SELECT
    -- predicate:begin
    NOT EXISTS (SELECT 1 FROM jsonb_object_keys(c) AS k
                WHERE k NOT IN ('lora_boost', 'diversity', 'candidate_cap'))
    AND (NOT c ? 'lora_boost' OR (jsonb_typeof(c -> 'lora_boost') = 'number'
         AND (c ->> 'lora_boost')::numeric BETWEEN 0 AND 1))
    AND (NOT c ? 'diversity' OR (jsonb_typeof(c -> 'diversity') = 'number'
         AND (c ->> 'diversity')::numeric BETWEEN 0 AND 1))
    AND (NOT c ? 'candidate_cap' OR (jsonb_typeof(c -> 'candidate_cap') = 'number'
         AND (c ->> 'candidate_cap')::numeric BETWEEN 1 AND 10000
         AND (c ->> 'candidate_cap')::numeric = trunc((c ->> 'candidate_cap')::numeric)))
    -- predicate:end
    FROM (SELECT v.config AS c) AS t
)
FROM experiments e WHERE e.id = v.experiment_id AND e.surface = 'recommendations';
