"""Namespace bucket allocation: taken when an experiment starts or grows its share, released when it
completes. Runs inside ExperimentRepository's lifecycle transactions (the experiment's row is locked)."""

from __future__ import annotations

from uuid import UUID

from abtest.contract.namespaces import NAMESPACE_BUCKETS
from abtest.domain.experiments import Experiment
from abtest.domain.namespaces import NamespaceFull, buckets_for_share, choose_buckets
from abtest.storage.database import Connection


def take_buckets(conn: Connection, experiment: Experiment, share: float) -> tuple[int, int]:
    """Make the experiment hold buckets_for_share(share) buckets of its surface's namespace, taking
    the missing ones from free buckets (see abtest.domain.namespaces for the policy); its buckets
    never move. NamespaceFull (409) if the free space is too small. Call inside a transaction.
    Returns how many buckets it held before and holds now (for the audit log)."""
    surface = experiment.surface
    created = conn.execute(
        "INSERT INTO namespaces (surface) VALUES (%s) ON CONFLICT (surface) DO NOTHING RETURNING surface",
        (surface,),
    ).fetchone()
    if created is not None:
        conn.execute(
            "INSERT INTO namespace_buckets (surface, bucket) SELECT %s, b FROM generate_series(0, %s) AS b",
            (surface, NAMESPACE_BUCKETS - 1),
        )
    # Serialise allocations per surface: two starts must not both see a bucket as free.
    conn.execute("SELECT 1 FROM namespaces WHERE surface = %s FOR UPDATE", (surface,))
    rows = conn.execute(
        "SELECT bucket, experiment_id, released_at IS NOT NULL AS released"
        " FROM namespace_buckets WHERE surface = %s AND (experiment_id IS NULL OR experiment_id = %s)",
        (surface, experiment.id),
    ).fetchall()
    held = sum(1 for row in rows if row["experiment_id"] is not None)
    wanted = buckets_for_share(share) - held
    if wanted <= 0:
        return held, held
    never_used = [row["bucket"] for row in rows if row["experiment_id"] is None and not row["released"]]
    released = [row["bucket"] for row in rows if row["experiment_id"] is None and row["released"]]
    if wanted > len(never_used) + len(released):
        raise NamespaceFull(surface, share, held, len(never_used) + len(released))
    chosen = choose_buckets(experiment.id, wanted, never_used, released)
    conn.execute(
        "UPDATE namespace_buckets SET experiment_id = %s, allocated_at = now()"
        " WHERE surface = %s AND bucket = ANY(%s) AND experiment_id IS NULL",
        (experiment.id, surface, chosen),
    )
    return held, held + wanted


def release_buckets(conn: Connection, experiment_id: UUID) -> int:
    """Free an experiment's buckets (it completed); they stay marked as used. Returns how many."""
    return conn.execute(
        "UPDATE namespace_buckets SET experiment_id = NULL, released_at = now() WHERE experiment_id = %s",
        (experiment_id,),
    ).rowcount
