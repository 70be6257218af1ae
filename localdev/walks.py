"""The executable curl walks of the docs, read by the end-to-end test against the local server
(`tests/e2e/test_local_server.py`) and by the `sam local start-api` check (`make sam-api-check`,
`localdev/samlocal.py`), so both run exactly what a reader copies.

A walk is every fenced `bash` block of a page that calls curl on http://127.0.0.1:3000 (what `make run`
serves). The pages' walks run as one script, in the order of WALK_PAGES: later pages reuse the shell
variables of earlier ones (`$ID` from the quick start). A request whose documented answer, the comment
line right after it, is an error body (`# {"error"...`) must answer a 4xx; every other request must
answer 2xx, and the script stops at the first that does not. Afterwards `walk_outcome` checks what the
walk must have left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LOCAL_BASE_URL = "http://127.0.0.1:3000"

# In the order they run; a docs page with a walk that is not listed fails tests/unit/test_docs.py.
WALK_PAGES = (
    "docs/quickstart.md",
    "docs/api/overrides.md",
    "docs/api/targeting.md",
    "docs/api/audit.md",
    "docs/api/holdouts.md",
    "docs/bandits.md",
    "docs/metrics-and-decisions.md",
    "docs/api/alerts.md",
    "docs/api/config-schemas.md",
    "docs/breakdowns-and-strata.md",
)

_BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Shell functions the script starts with: `curl` fails on any error status (and echoes each request on
# stderr, so a failure names it); `curl_4xx` is what a request documented as failing becomes.
_PRELUDE = (
    "set -euo pipefail\n"
    'curl() { echo "+ curl $*" >&2; command curl --fail-with-body "$@"; echo; }\n'
    'curl_4xx() { echo "+ curl $* (a 4xx expected)" >&2; local out;'
    " out=$(command curl -s -w '\\n%{http_code}' \"$@\"); echo \"${out%$'\\n'*}\";"
    " [[ ${out##*$'\\n'} == 4* ]] || { echo \"expected a 4xx, got ${out##*$'\\n'}\" >&2; return 1; }; }\n"
)


def walk_blocks(page: Path) -> list[str]:
    """The page's bash blocks that call curl on the local server, in page order."""
    blocks = _BASH_BLOCK.findall(page.read_text(encoding="utf-8"))
    return [block for block in blocks if "curl" in block and LOCAL_BASE_URL in block]


def pages_with_walks(root: Path = ROOT) -> list[str]:
    """Every Markdown page under docs/ (relative to `root`) that holds a walk, sorted."""
    return sorted(
        page.relative_to(root).as_posix() for page in (root / "docs").rglob("*.md") if walk_blocks(page)
    )


def walk_script(base_url: str = LOCAL_BASE_URL, root: Path = ROOT) -> str:
    """Every page's walk, in WALK_PAGES order, as one bash script against `base_url`.

    Raises ValueError when a listed page has no walk (a page moved or a block lost its `bash` tag)."""
    blocks = []
    for name in WALK_PAGES:
        found = walk_blocks(root / name)
        if not found:
            raise ValueError(f"{name} has no bash block with curl calls to {LOCAL_BASE_URL}")
        blocks.extend(found)
    walk = expect_documented_errors("\n".join(blocks))
    return _PRELUDE + walk.replace(LOCAL_BASE_URL, base_url.rstrip("/"))


def expect_documented_errors(walk: str) -> str:
    """Turn each curl command whose documented answer (the comment line right after it) is an error
    body into `curl_4xx`, so the walk checks that it fails as the page says."""
    lines = walk.split("\n")
    for index, line in enumerate(lines):
        if not line.startswith('# {"error"'):
            continue
        start = index - 1
        while start > 0 and lines[start - 1].rstrip().endswith("\\"):
            start -= 1  # back to the first line of a command continued with backslashes
        if lines[start].startswith("curl "):
            lines[start] = "curl_4xx " + lines[start][len("curl ") :]
    return "\n".join(lines)


def walk_outcome(get_json: Callable[[str], Any], base_url: str = LOCAL_BASE_URL) -> list[str]:
    """What the walks must have left behind, read with `get_json(url)`; the differences (none: [])."""
    base = f"{base_url.rstrip('/')}/api/v1"
    problems = []
    experiments = get_json(f"{base}/experiments")["experiments"]
    if [(e["name"], e["status"]) for e in experiments] != [("recommendation_algorithm_test", "running")]:
        return [f"running experiments: {[(e['name'], e['status']) for e in experiments]}"]
    (experiment,) = experiments
    if [v["config"] for v in experiment["variants"]] != [{"lora_boost": 0.3}, {"lora_boost": 0.5}]:
        problems.append(f"variant configs: {[v['config'] for v in experiment['variants']]}")
    lookup = get_json(f"{base}/experiments/{experiment['id']}/assignments/user-4")
    if lookup.get("experiment_variant") != "recommendation_algorithm_test:treatment":
        problems.append(f"user-4's variant: {lookup.get('experiment_variant')}")
    report = get_json(f"{base}/experiments/{experiment['id']}/metrics")
    treatment = report["variant_metrics"][experiment["variants"][1]["id"]]
    clicks = treatment["conversions"].get("click", {}).get("count")
    if (treatment["unique_users"], clicks) != (1, 1):
        problems.append(f"treatment metrics: {treatment}")
    return problems
