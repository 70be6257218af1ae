"""Path parameters shared by the routes, decoded and checked the same way everywhere.

API Gateway (and the local server) hand path parameters over still percent-encoded
(`user%40example.com`). A user id in a path must name the same user as in a body, so it is decoded
strictly (bytes that are not UTF-8 name no user and must not become U+FFFD and look up another one)
and only then held to the limits of user ids in bodies: 1 to 256 characters, no NUL, valid Unicode.
The limit applies to the decoded id, so `a@b` counts 3 characters however it was encoded, and every
breach of it is the same 422 naming `user_id` on every route, whatever the length.

The check runs as a pydantic validator of the annotated type. It raises the service's own errors,
which pydantic does not catch (they are not ValueError), so they reach the error mapping as they are
instead of becoming the generic path answer (404: a path that names no resource).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import AfterValidator

from abtest.domain.overrides import check_user_id
from abtest.errors import BadRequest, ErrorCode

__all__ = ["PathUserId", "decode_user_id"]


def decode_user_id(raw: str) -> str:
    """The user id a raw path segment names: strictly percent-decoded, then 1..256 storable characters.

    Raises BadRequest (400 `invalid_path`) for bytes that are not UTF-8 and InvalidInput (422) for an
    id outside the limits, both naming `user_id`.
    """
    try:
        user_id = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(
            "user_id: percent-encoded bytes must be UTF-8", code=ErrorCode.INVALID_PATH, field="user_id"
        ) from None
    return check_user_id(user_id)


PathUserId = Annotated[
    str,
    Path(description="User id, percent-encoded; 1 to 256 characters once decoded"),
    AfterValidator(decode_user_id),
]
