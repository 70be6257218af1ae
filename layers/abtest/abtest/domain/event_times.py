"""When an event may count: never before its experiment started, never before its user was assigned.

One rule for every way an event arrives (a conversion alone, a batch of exposures and conversions):

- An exposure or a conversion dated before the experiment's `started_at` is refused
  (`event_before_start`): nobody could have seen a variant, or converted under one, before it existed,
  and such a date would stretch the experiment's time series back to it.
- An exposure dated before the user's stored assignment is moved to the assignment's time when it is at
  most `ASSIGNMENT_CLOCK_LAG` earlier (a client's clock that lags the server's), and refused beyond
  that (`event_before_assignment`): a user is shown their variant only once assigned. So a user's
  first exposure, from which their conversions count, is never before their assignment.
- A conversion dated before the user's assignment (but after the start) is stored; it does not count,
  like any conversion before the user's first exposure (attribution).

The rule is evaluated where the event is written, in the same statement that reads the experiment and
the assignment (abtest.storage.event_times holds its SQL form; one scenario table tests both forms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from abtest.errors import ErrorCode
from abtest.limits import MAX_CLOCK_SKEW

EventKind = Literal["exposure", "conversion"]

# How much earlier than the user's assignment an exposure may be dated and still be kept (moved to the
# assignment's time): the clock skew the API already tolerates for events dated in the future.
ASSIGNMENT_CLOCK_LAG: timedelta = MAX_CLOCK_SKEW


class EventTimeError(StrEnum):
    """Why an event's date is refused (the error code of its rejection)."""

    BEFORE_START = ErrorCode.EVENT_BEFORE_START.value
    BEFORE_ASSIGNMENT = ErrorCode.EVENT_BEFORE_ASSIGNMENT.value


MESSAGES = {
    EventTimeError.BEFORE_START: "the event is dated before the experiment started",
    EventTimeError.BEFORE_ASSIGNMENT: (
        f"the exposure is dated more than {int(ASSIGNMENT_CLOCK_LAG.total_seconds() // 60)} minutes "
        "before the user was assigned"
    ),
}


@dataclass(frozen=True)
class EventTime:
    """The decision: the time to store (`occurred_at`), or why the event is refused (`error`)."""

    occurred_at: datetime | None
    error: EventTimeError | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


def event_time(
    kind: EventKind,
    occurred_at: datetime,
    *,
    started_at: datetime | None,
    assigned_at: datetime | None,
) -> EventTime:
    """Decide an event's stored time: `occurred_at` is its date (the time received when none was sent),
    `started_at` the experiment's start (None: never started, no bound), `assigned_at` the user's stored
    assignment (None: none, e.g. a forced user or a holdout member)."""
    if started_at is not None and occurred_at < started_at:
        return EventTime(None, EventTimeError.BEFORE_START)
    if kind == "exposure" and assigned_at is not None and occurred_at < assigned_at:
        if assigned_at - occurred_at > ASSIGNMENT_CLOCK_LAG:
            return EventTime(None, EventTimeError.BEFORE_ASSIGNMENT)
        return EventTime(assigned_at)
    return EventTime(occurred_at)
