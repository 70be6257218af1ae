"""The SQL form of abtest.domain.event_times.event_time, for the statements that write events.

Ingestion decides and writes in one statement (one round trip), so the rule is evaluated by the server
on the experiment's `started_at` and the assignment's `assigned_at` it reads there. These expressions
are built from the same constant as the Python rule, and tests/integration/test_event_times.py runs one
scenario table against both.
"""

from __future__ import annotations

from abtest.domain.event_times import ASSIGNMENT_CLOCK_LAG, EventTimeError

_LAG = f"interval '{int(ASSIGNMENT_CLOCK_LAG.total_seconds())} seconds'"


def time_error_sql(kind: str, at: str, started_at: str, assigned_at: str) -> str:
    """SQL: the event's EventTimeError code, or NULL when its date is accepted (arguments are SQL
    expressions: the kind 'exposure' or 'conversion', its date, the experiment's start, the assignment)."""
    return (
        f"(CASE WHEN {started_at} IS NOT NULL AND {at} < {started_at}"
        f" THEN '{EventTimeError.BEFORE_START.value}'"
        f" WHEN {kind} = 'exposure' AND {assigned_at} IS NOT NULL"
        f" AND {at} < {assigned_at}::timestamptz - {_LAG}"
        f" THEN '{EventTimeError.BEFORE_ASSIGNMENT.value}' END)"
    )


def stored_at_sql(kind: str, at: str, assigned_at: str) -> str:
    """SQL: the time to store for an accepted event (an exposure a little before its user's assignment
    is moved to the assignment's time)."""
    return (
        f"(CASE WHEN {kind} = 'exposure' AND {assigned_at} IS NOT NULL AND {at} < {assigned_at}"
        f" THEN {assigned_at} ELSE {at} END)"
    )
