-- Namespaces: experiments of one surface split its traffic and never overlap (issue 11).
--
-- Each surface that ever started an experiment has a namespace: a salt (a random UUID, independent of
-- every experiment salt) and 10,000 buckets, one row each. A bucket is owned by at most one
-- experiment (running or paused), so siblings are disjoint by construction; completing an experiment
-- releases its buckets (released_at records that they were used, so new experiments take never-used
-- buckets first). A user enrolled through the namespace is a member of that experiment for good
-- (one row per surface and user); a membership of a completed experiment no longer binds.

CREATE TABLE namespaces (
    surface    text PRIMARY KEY,
    salt       text NOT NULL DEFAULT gen_random_uuid()::text,
    buckets    integer NOT NULL DEFAULT 10000,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT namespaces_salt_key UNIQUE (salt),
    CONSTRAINT namespaces_buckets_check CHECK (buckets = 10000),
    CONSTRAINT namespaces_surface_check CHECK (surface ~ '^[a-z][a-z0-9_.-]{0,63}$')
);

CREATE TABLE namespace_buckets (
    surface       text NOT NULL REFERENCES namespaces (surface),
    bucket        integer NOT NULL,
    experiment_id uuid REFERENCES experiments (id),
    allocated_at  timestamptz,
    released_at   timestamptz,
    PRIMARY KEY (surface, bucket),
    CONSTRAINT namespace_buckets_bucket_check CHECK (bucket >= 0 AND bucket < 10000)
);
CREATE INDEX namespace_buckets_experiment_idx ON namespace_buckets (experiment_id, bucket)
    WHERE experiment_id IS NOT NULL;

CREATE TABLE namespace_members (
    surface       text NOT NULL REFERENCES namespaces (surface),
    user_id       text NOT NULL,
    experiment_id uuid NOT NULL REFERENCES experiments (id),
    joined_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (surface, user_id),
    CONSTRAINT namespace_members_user_id_check CHECK (char_length(user_id) BETWEEN 1 AND 256)
);
CREATE INDEX namespace_members_experiment_idx ON namespace_members (experiment_id);

-- The share of its surface's namespace an experiment asks for; held as buckets while it runs or is
-- paused. 0 only for experiments this migration found running beside the one their surface served.
ALTER TABLE experiments ADD COLUMN namespace_share double precision NOT NULL DEFAULT 1;
ALTER TABLE experiments ADD CONSTRAINT experiments_namespace_share_check
    CHECK (namespace_share >= 0 AND namespace_share <= 1);

-- Existing data. Until now a surface served only its first running experiment (by started_at,
-- created_at, id), to every user its traffic allocation admitted. That experiment (or, on a surface
-- with none running, the first paused one, which would serve again on resume) gets the whole
-- namespace, so it keeps serving exactly whom it served. Any other running or paused experiment of
-- the surface gets namespace_share 0 and no buckets: it keeps its enrolled users and enrolls no new
-- ones until it grows into free space (PATCH namespace_share).
INSERT INTO namespaces (surface)
SELECT DISTINCT surface FROM experiments WHERE status IN ('running', 'paused');

INSERT INTO namespace_buckets (surface, bucket)
SELECT n.surface, b FROM namespaces n, generate_series(0, 9999) AS b;

CREATE TEMPORARY TABLE namespace_owners ON COMMIT DROP AS
SELECT DISTINCT ON (surface) surface, id AS experiment_id
FROM experiments
WHERE status IN ('running', 'paused')
ORDER BY surface, status <> 'running', started_at, created_at, id;

UPDATE namespace_buckets nb SET experiment_id = o.experiment_id, allocated_at = now()
FROM namespace_owners o WHERE nb.surface = o.surface;

UPDATE experiments e SET namespace_share = CASE WHEN e.id IN (SELECT experiment_id FROM namespace_owners)
                                                THEN 1 ELSE 0 END
WHERE e.status IN ('running', 'paused');

-- Memberships from the stored assignments of running and paused experiments (every stored assignment
-- keeps its variant: assignments are untouched). A user the old behaviour enrolled in two experiments
-- of one surface becomes a member of the surface's owner if enrolled there, else of the earliest.
INSERT INTO namespace_members (surface, user_id, experiment_id, joined_at)
SELECT DISTINCT ON (e.surface, a.user_id) e.surface, a.user_id, a.experiment_id, a.assigned_at
FROM assignments a
JOIN experiments e ON e.id = a.experiment_id
LEFT JOIN namespace_owners o ON o.experiment_id = e.id
WHERE e.status IN ('running', 'paused')
ORDER BY e.surface, a.user_id, o.experiment_id IS NULL, a.assigned_at, a.experiment_id;
