"""Domain errors. The repository turns driver errors into these; the HTTP layer maps them to statuses."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base class: `code` is the stable machine-readable error name, `field` the input it concerns."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = "not_found"

    def __init__(self, message: str, *, code: str = "not_found", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class Conflict(DomainError):
    """The request is well-formed but clashes with what is stored (duplicate name, frozen field)."""

    code = "conflict"

    def __init__(self, message: str, *, code: str = "conflict", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class InvalidTransition(Conflict):
    """A lifecycle transition the state machine does not allow."""

    def __init__(self, current: str, target: str, allowed: Sequence[str]) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none (final state)"
        super().__init__(
            f"cannot change status from {current} to {target}; allowed from {current}: {allowed_text}",
            code="invalid_transition",
            field="status",
        )
        self.current = current
        self.target = target
        self.allowed = list(allowed)


class Unavailable(DomainError):
    """The database cannot be reached or did not answer in time; nothing was written."""

    code = "database_unavailable"


class InvalidInput(DomainError):
    """Input that passed schema validation but is still unusable (e.g. a tampered cursor)."""

    code = "validation_error"

    def __init__(self, message: str, *, code: str = "validation_error", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


class BadRequest(DomainError):
    """A request that is malformed below the JSON level (e.g. a path that is not UTF-8): HTTP 400."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str = "bad_request", field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code
