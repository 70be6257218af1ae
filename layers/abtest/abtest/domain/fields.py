"""Field types several aggregates share: user ids, the client JSON objects, and the strict input base.

Each type carries its limits (abtest.limits), so a body model names them once: `user_id: UserId`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from abtest.limits import MAX_CONTEXT_BYTES, MAX_USER_ID_LENGTH, json_size_limit, json_value, storable_text


class StrictInput(BaseModel):
    # The base of body models. Unknown fields are errors: a typo such as "traffic" must not be silently
    # ignored. (A comment, not a docstring: the OpenAPI schema of a body shows its own docstring only.)
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


UserId = Annotated[str, Field(min_length=1, max_length=MAX_USER_ID_LENGTH), AfterValidator(storable_text)]
Context = Annotated[dict[str, Any], json_value("context"), json_size_limit("context", MAX_CONTEXT_BYTES)]
Metadata = Annotated[dict[str, Any], json_value("metadata"), json_size_limit("metadata", MAX_CONTEXT_BYTES)]
# A user's attributes for targeting (docs/api/targeting.md): the same limits as `context`.
Attributes = Annotated[
    dict[str, Any],
    json_value("attributes"),
    json_size_limit("attributes", MAX_CONTEXT_BYTES),
    Field(description="The user's attributes, matched against experiments' targeting at enrollment"),
]
