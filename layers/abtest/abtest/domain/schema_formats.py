"""The `format` values a config schema may assert, each with its check of a string (a schema naming any
other format is refused when it is published, so no format is silently unchecked)."""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from abtest.domain.js_values import regex_problem


def _is_date(value: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_date_time(value: str) -> bool:
    # RFC 3339: a full date, 'T', a time with seconds, optional fraction, and an offset (Z or +hh:mm).
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and "." in domain and " " not in value and len(value) <= 254)


def _is_uuid(value: str) -> bool:
    if not re.fullmatch(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
    ):
        return False
    UUID(value)
    return True


def _is_ip(version: int) -> Any:
    def check(value: str) -> bool:
        try:
            return ipaddress.ip_address(value).version == version
        except ValueError:
            return False

    return check


def _is_uri(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*", value))


# The formats asserted (a value of another format is refused at write): name -> check of a string.
FORMATS: dict[str, Any] = {
    "date": _is_date,
    "date-time": _is_date_time,
    "email": _is_email,
    "uuid": _is_uuid,
    "ipv4": _is_ip(4),
    "ipv6": _is_ip(6),
    "uri": _is_uri,
    "regex": lambda value: regex_problem(value) is None,
}
