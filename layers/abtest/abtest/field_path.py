"""The one syntax for naming a field in an error: ('variants', 1, 'weight') -> 'variants[1].weight'.

The API's 422 bodies (abtest.http.app), the domain's InvalidInput fields (abtest.domain) and the
statistics CLI's errors (abtest.stats.inputs) all name fields this way. Its own module, standard library
only: the statistics engine may import nothing else of the service (tests/unit/test_architecture.py
allows it this one module), and the handlers can use it without loading the statistics engine.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["field_path"]


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: ('variants', 1, 'weight') -> 'variants[1].weight'.

    List indices become `[i]`, names are joined with dots; an empty location gives ''.
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
