"""The digest as an HTML page, in the report's look (templates/digest.html.j2, on the report's base)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from abtest.analysis.report import number, pvalue
from abtest.domain.digests import Digest

if TYPE_CHECKING:
    from jinja2 import Environment


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("abtest.analysis", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(pvalue=pvalue, number=number)
    return environment


def digest_page(digest: Digest, *, every: str) -> str:
    """The page of a digest over the period it covers (`every`: day or week)."""
    return _environment().get_template("digest.html.j2").render(digest=digest, every=every)
