"""Development tokens for the local server's `--auth jwt` mode.

API Gateway verifies a JWT's signature, issuer and audience, then hands the handler its claims and
scopes. Locally there is no identity provider: `python -m localdev token --scopes read,ingest` mints
an unsigned token (alg "none"), and the local server copies its claims into the event the same way.
Never accepted in AWS: there the authorizer rejects unsigned tokens before any handler runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from abtest.settings import DEFAULT_SCOPE_PREFIX

SCOPE_PREFIX = DEFAULT_SCOPE_PREFIX


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def development_token(scopes: Iterable[str], subject: str = "local-developer") -> str:
    """An unsigned JWT whose `scope` claim holds the given scopes (prefixed like Cognito's)."""
    header = {"alg": "none", "typ": "JWT"}
    claims = {
        "sub": subject,
        "iss": "local",
        "scope": " ".join(SCOPE_PREFIX + s.strip() for s in scopes if s.strip()),
    }
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def authorizer_context(authorization: str | None) -> dict[str, Any] | None:
    """What API Gateway's JWT authorizer would add for this Authorization header (None: no token)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    parts = authorization.split(" ", 1)[1].strip().split(".")
    if len(parts) < 2:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    scope = claims.get("scope", "")
    return {"jwt": {"claims": claims, "scopes": scope.split() if isinstance(scope, str) else []}}
