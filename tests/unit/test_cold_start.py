"""What a cold start imports: each HTTP handler module, imported in a fresh interpreter, must not load
the modules on the deny list (they cost a cold start tens to hundreds of milliseconds and its first
request does not need them: bench/bench_cold_start.py measures them). Tracing, when enabled, still
works: the X-Ray SDK is loaded then, and only then.

Each case runs in a subprocess so that nothing another test imported counts, and the environment is
that of a deployed function (inside Lambda, credentials from Secrets Manager) with tracing disabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localdev.template import http_routes

# Module name prefixes no HTTP handler may import when its module is imported, and why:
DENIED = {
    "aws_xray_sdk": "the X-Ray SDK (~250 ms with its botocore clients) loads only when tracing is on",
    "numpy": "numpy (~60 ms) loads where ranking happens, on the first recommendation",
    "abtest.domain.recommender": "the recommender (numpy) loads on the first recommendation",
    "boto3": "boto3 loads only to read a secret or make an IAM token, on the first connection",
    # Powertools imports the bare `botocore` package (logging, os and re: well under 1 ms) to add its
    # user agent; any botocore submodule means a session or client was built.
    "botocore.": "botocore's sessions and clients load only with boto3",
    "s3transfer": "comes with boto3",
    "jinja2": "Jinja2 (~30 ms) loads with the first HTML page",
}
# The analysis and statistics packages serve the metrics function only.
DENIED_OUTSIDE_METRICS = {
    "abtest.analysis": "the metrics function's",
    "abtest.stats": "the metrics function's",
}
# A deployed function (LAMBDA_TASK_ROOT set) reading its credentials from Secrets Manager.
DEPLOYED_ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "abtest-test",
    "AWS_REGION": "us-east-1",
    "DB_HOST": "proxy.example.internal",
    "DB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:abtest-db",
    "POWERTOOLS_SERVICE_NAME": "abtest-test",
    "POWERTOOLS_METRICS_NAMESPACE": "ABTestTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
# Inherited variables that would change what is imported or where from.
DROPPED_ENV = ("DATABASE_URL", "PYTHONPATH", "AWS_SAM_LOCAL", "CHALICE_LOCAL")


def handler_modules() -> dict[str, Path]:
    """Every HTTP handler module of template.yaml and its function folder."""
    return {route.handler.rpartition(".")[0]: route.code_uri for route in http_routes()}


def run_child(folder: Path, code: str, env: dict[str, str]) -> dict[str, object]:
    """Run `code` in a fresh interpreter with `folder` on the path as Lambda puts it; it prints JSON."""
    environment = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    environment.update(env)
    prelude = f"import json, sys\nsys.path.insert(1, {str(folder)!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], env=environment, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def loaded_by(folder: Path, statement: str, env: dict[str, str] = DEPLOYED_ENV) -> set[str]:
    """The modules loaded after running `statement` in a fresh interpreter."""
    found = run_child(folder, f"{statement}\nprint(json.dumps({{'modules': sorted(sys.modules)}}))", env)
    modules = found["modules"]
    assert isinstance(modules, list)
    return set(modules)


def violations(module: str, loaded: set[str]) -> list[str]:
    """Every loaded module on the deny list, with the reason it is denied."""
    denied = dict(DENIED)
    if module != "metrics_handler":
        denied.update(DENIED_OUTSIDE_METRICS)
    return sorted(
        f"{name}: {reason}" for name in loaded for prefix, reason in denied.items() if matches(name, prefix)
    )


def matches(name: str, prefix: str) -> bool:
    """`numpy` matches numpy and numpy.linalg; `botocore.` only botocore's submodules."""
    package = prefix.rstrip(".")
    return name.startswith(package + ".") or (name == package and not prefix.endswith("."))


HANDLERS = handler_modules()


def test_every_http_function_is_checked() -> None:
    assert set(HANDLERS) == {
        "assignments_handler",
        "events_handler",
        "experiments_handler",
        "metrics_handler",
    }


@pytest.mark.parametrize("module", sorted(HANDLERS))
def test_importing_a_handler_loads_nothing_on_the_deny_list(module: str) -> None:
    loaded = loaded_by(HANDLERS[module], f"import {module}")
    assert module in loaded
    assert violations(module, loaded) == []


def test_the_check_catches_a_denied_import() -> None:
    """The same check, on a handler followed by imports it must not make: it reports each of them."""
    loaded = loaded_by(
        HANDLERS["experiments_handler"],
        "import experiments_handler, numpy, boto3, abtest.stats, aws_lambda_powertools.tracing.tracer\n"
        "aws_lambda_powertools.tracing.tracer.Tracer()",
    )
    found = {problem.split(":")[0] for problem in violations("experiments_handler", loaded)}
    assert {"numpy", "boto3", "abtest.stats", "aws_xray_sdk", "botocore.session"} <= found


def test_ranking_loads_numpy_when_it_is_first_needed() -> None:
    """The assignments function ranks with numpy: it loads with the first recommendation, not before."""
    found = run_child(
        HANDLERS["assignments_handler"],
        "import assignments_handler\n"
        "before = 'numpy' in sys.modules\n"
        "from abtest.domain.recommender_config import CatalogItem\n"
        "from abtest.domain.serving import AssignmentService\n"
        "class Catalog:\n"
        "    def catalog(self):\n"
        "        return [CatalogItem(id='a', title='A', embedding=[1.0, 0.0], popularity=3)]\n"
        "service = AssignmentService(None, Catalog(), experiment_ttl=0, catalog_ttl=60)\n"
        "items = service._catalog.get()\n"
        "print(json.dumps({'before': before, 'after': 'numpy' in sys.modules, 'ids': list(items.ids)}))",
        DEPLOYED_ENV,
    )
    assert found == {"before": False, "after": True, "ids": ["a"]}


TRACED_CALL = """
import experiments_handler
import experiments_routes.experiments
from aws_lambda_powertools import Tracer
from abtest.observability import tracer
from localdev.lambda_events import LocalLambdaContext, http_api_event

loaded_at_import = 'aws_xray_sdk.core' in sys.modules
event = http_api_event(
    'GET', '/api/v1/experiments/00000000-0000-4000-8000-000000000000',
    route_key='GET /api/v1/experiments/{experiment_id}',
    path_parameters={'experiment_id': '00000000-0000-4000-8000-000000000000'},
)
response = experiments_handler.lambda_handler(event, LocalLambdaContext())
print(json.dumps({
    'loaded_at_import': loaded_at_import,
    'enabled': tracer.enabled,
    'is_powertools_tracer': isinstance(tracer.tracer, Tracer),
    'tracer_disabled': tracer.tracer.disabled,
    'method_wrapped': hasattr(experiments_routes.experiments.get_experiment, '__wrapped__'),
    'status': response['statusCode'],
    'body': json.loads(response['body']),
}))
"""


def test_tracing_enabled_creates_the_tracer_and_a_request_still_works() -> None:
    """Deployed with tracing on (as template.yaml's `Tracing: Active`): the Powertools Tracer exists,
    the routes are traced, and an invocation works even without an X-Ray trace context (the SDK
    logs the missing context; it does not raise). No database is configured, so the traced route
    answers 503 without opening a socket."""
    env = {
        key: value
        for key, value in DEPLOYED_ENV.items()
        if key not in ("POWERTOOLS_TRACE_DISABLED", "DB_HOST", "DB_SECRET_ARN")
    }
    env |= {
        "POWERTOOLS_TRACE_DISABLED": "false",
        "AUTH_MODE": "none",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    found = run_child(HANDLERS["experiments_handler"], TRACED_CALL, env)
    assert found["loaded_at_import"] is True
    assert found["enabled"] is True
    assert found["is_powertools_tracer"] is True
    assert found["tracer_disabled"] is False
    assert found["method_wrapped"] is True
    assert found["status"] == 503
    body = found["body"]
    assert isinstance(body, dict)
    assert body["error"] == "database_unavailable"


def test_tracing_disabled_leaves_the_routes_undecorated() -> None:
    found = run_child(
        HANDLERS["experiments_handler"],
        "import experiments_handler, experiments_routes.experiments\n"
        "from abtest.observability import tracer\n"
        "print(json.dumps({'enabled': tracer.enabled,"
        " 'method_wrapped': hasattr(experiments_routes.experiments.get_experiment, '__wrapped__')}))",
        DEPLOYED_ENV,
    )
    assert found == {"enabled": False, "method_wrapped": False}
