"""The one request-body parser and the one response serialiser of every HTTP route.

Bodies are parsed here, before routing, with the service's limits (abtest.limits): at most
MAX_BODY_BYTES, nested at most MAX_BODY_DEPTH levels, integers within +-2^53, no NaN or Infinity, text
without NUL or lone surrogates. A breach is a 4xx naming the field, so nothing a parser or a database
cannot take ever reaches a handler (Python's json raises RecursionError past ~1,000 levels and
ValueError past 4,300 digits; both were 500s).

Responses are serialised without NaN or Infinity, ever: a non-finite number is a bug upstream, logged
and counted, and answered as null rather than as text no strict JSON parser reads.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.json_encoder import Encoder

from abtest.errors import ErrorCode
from abtest.limits import MAX_BODY_BYTES, MAX_BODY_DEPTH, json_problem
from abtest.observability import cloudwatch, logger

# Integer literals longer than this cannot be within +-2^53; they are never converted to int.
_MAX_INT_DIGITS = 17


class _HugeInt(str):
    """An integer literal too long to be exact as a double (kept as text so its field can be named)."""


def _parse_int(text: str) -> int | _HugeInt:
    digits = len(text) - text.startswith("-")
    return _HugeInt(text) if digits > _MAX_INT_DIGITS else int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class DuplicateKey(Exception):
    """A JSON object names the same key twice (json would silently keep the last value)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return result


def _parse_float(text: str) -> float:
    # -0.0 is 0 (not a distinct value to store and echo back); `or` maps both zeros to +0.0.
    return float(text) or 0.0


def loads(text: str | bytes) -> Any:
    """json.loads without NaN/Infinity, without converting huge integer literals (see BodyError),
    refusing duplicate keys (DuplicateKey) and reading -0.0 as 0."""
    return json.loads(
        text,
        parse_constant=_refuse_constant,
        parse_int=_parse_int,
        parse_float=_parse_float,
        object_pairs_hook=_unique_keys,
    )


class _NotPlain(Exception):
    pass


def _plain_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _NotPlain
    return result


def _plain_float(text: str) -> float:
    value = float(text)
    if value == 0 and text.startswith("-"):
        raise _NotPlain
    return value


def is_plain(text: str) -> bool:
    """Whether a JSON text has no duplicate key and no negative zero, so that a parser that keeps the
    last duplicate and the sign of zero (pydantic's model_validate_json) reads it as `loads` does.
    Invalid JSON counts as plain: the parser that follows refuses it anyway."""
    try:
        json.loads(text, object_pairs_hook=_plain_pairs, parse_float=_plain_float)
    except _NotPlain:
        return False
    except (ValueError, RecursionError):
        return True
    return True


@dataclass(frozen=True)
class BodyError(Exception):
    """Why a body is refused before routing: HTTP status, error code, message and field."""

    status: int
    code: ErrorCode
    message: str
    field: str

    def body(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"error": self.code, "message": self.message, "field": self.field}
        if self.status == 422:
            answer["errors"] = [{"field": self.field, "message": self.message}]
        return answer


def check_body(event: Mapping[str, Any]) -> None:
    """Raise BodyError if the event's body breaks a limit; return quietly otherwise (or without body)."""
    raw = event.get("body")
    if not raw:
        return
    data: str | bytes = raw
    if event.get("isBase64Encoded"):
        try:
            data = base64.b64decode(raw)
        except (binascii.Error, ValueError):
            raise BodyError(
                400, ErrorCode.INVALID_JSON, "the request body is not valid base64", "body"
            ) from None
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > MAX_BODY_BYTES:
        message = f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES}"
        raise BodyError(413, ErrorCode.BODY_TOO_LARGE, message, "body")
    try:
        parsed = loads(data)
    except RecursionError:
        message = f"body: nested deeper than {MAX_BODY_DEPTH} levels"
        raise BodyError(422, ErrorCode.VALIDATION_ERROR, message, "body") from None
    except UnicodeDecodeError:
        raise BodyError(
            400, ErrorCode.INVALID_JSON, "the request body is not UTF-8 encoded JSON", "body"
        ) from None
    except DuplicateKey as exc:
        message = f"the key {exc.key!r} appears twice in one object; each key may appear once"
        raise BodyError(422, ErrorCode.DUPLICATE_KEY, message, exc.key) from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        detail = " (NaN and Infinity are not JSON)" if "is not JSON" in str(exc) else ""
        raise BodyError(
            400, ErrorCode.INVALID_JSON, f"the request body is not valid JSON{detail}", "body"
        ) from None
    problem = _huge_int(parsed) or json_problem(parsed, MAX_BODY_DEPTH)
    if problem is not None:
        where, message = problem
        where = where or "body"
        raise BodyError(422, ErrorCode.VALIDATION_ERROR, f"{where}: {message}", where)


def _huge_int(value: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _HugeInt):
            return where, "integers must be within +-2^53 (9007199254740992) to survive as a double"
        if isinstance(item, dict):
            stack.extend((child, f"{where}.{key}" if where else str(key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Serialise a response body as strict JSON: NaN and Infinity become null (logged and counted)."""
    try:
        return json.dumps(value, separators=(",", ":"), cls=Encoder, allow_nan=False)
    except ValueError:
        logger.error("non-finite number in a response; answered as null")
        cloudwatch.add_metric(name="NonFiniteResponse", unit=MetricUnit.Count, value=1)
        # Round trip through Python's lenient JSON to reach every float, whatever type held it.
        plain = json.loads(json.dumps(value, separators=(",", ":"), cls=Encoder))
        return json.dumps(_finite(plain), separators=(",", ":"), allow_nan=False)
