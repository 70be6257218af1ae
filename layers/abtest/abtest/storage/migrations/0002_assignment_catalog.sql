-- Surfaces (where an experiment runs) and the built-in recommender's catalog.

-- The surface an experiment runs on; POST /recommendations picks among running experiments of its
-- surface. Variant configs of the "recommendations" surface are validated against the recommender.
ALTER TABLE experiments ADD COLUMN surface text NOT NULL DEFAULT 'recommendations';
ALTER TABLE experiments ADD CONSTRAINT experiments_surface_check
    CHECK (surface ~ '^[a-z][a-z0-9_.-]{0,63}$');
CREATE INDEX experiments_running_surface_idx ON experiments (surface, started_at, created_at, id)
    WHERE status = 'running';

CREATE TABLE items (
    id         text PRIMARY KEY,
    title      text NOT NULL DEFAULT '',
    embedding  double precision[] NOT NULL,
    popularity double precision NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT items_id_check CHECK (char_length(id) BETWEEN 1 AND 128),
    CONSTRAINT items_embedding_check CHECK (cardinality(embedding) BETWEEN 1 AND 4096),
    CONSTRAINT items_popularity_check CHECK (popularity >= 0)
);

CREATE TABLE user_profiles (
    user_id    text PRIMARY KEY,
    embedding  double precision[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_profiles_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256),
    CONSTRAINT user_profiles_embedding_check CHECK (cardinality(embedding) BETWEEN 1 AND 4096)
);
