"""Environment configuration, parsed once per container. Nothing else reads os.environ."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The one definition of the scope prefix (settings is cross-cutting; http.scopes and localdev use it);
# the template's ScopePrefix default equals it (a unit test checks).
DEFAULT_SCOPE_PREFIX = "abtest/"


class Settings(BaseModel):
    """Database settings. Locally `DATABASE_URL`; in AWS a host (RDS Proxy) plus IAM auth or a secret."""

    model_config = ConfigDict(frozen=True)

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_name: str = "abtest"
    db_user: str | None = None
    db_secret_arn: str | None = None
    db_iam_auth: bool = False
    db_sslmode: str | None = None
    db_connect_timeout: int = Field(default=5, ge=1, le=60)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=900_000)
    aws_region: str | None = None
    # How long a container trusts its copy of the running experiments and of the catalog.
    experiment_cache_ttl_seconds: float = Field(default=10.0, ge=0, le=3600)
    catalog_cache_ttl_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # "jwt": every route needs its scope in the API Gateway JWT authorizer context (AWS).
    # "none": no checks; only the local server sets it, and then it binds to 127.0.0.1 only.
    auth_mode: Literal["jwt", "none"] = "jwt"
    scope_prefix: str = DEFAULT_SCOPE_PREFIX
    # The scheduled rollup may fold a backlog: it gets a longer statement timeout than requests.
    rollup_statement_timeout_ms: int = Field(default=240_000, ge=1000, le=900_000)
    # Seconds a rollup run folds before it keeps the days left for the next run (RollupRepository.roll_up):
    # below the function's timeout (300 s) minus the rest of its tick (SRM, reweights, alerts).
    rollup_budget_seconds: float = Field(default=180.0, ge=1, le=900)
    # Alerts and webhooks (docs/alerts.md). The local server sets webhook_local_mode (http to
    # 127.0.0.1 allowed) and a key file; in AWS the template sets the KMS key, the queue and the bus.
    webhook_local_mode: bool = False
    webhook_kms_key_id: str | None = None
    webhook_key_file: str | None = None
    webhook_queue_url: str | None = None
    alert_event_bus: str | None = None
    webhook_retry_base_seconds: float = Field(default=30.0, ge=0.05, le=3600)
    webhook_retry_cap_seconds: float = Field(default=3600.0, ge=0.05, le=86_400)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_disable_after_failures: int = Field(default=20, ge=1, le=1000)
    webhook_lease_seconds: float = Field(default=60.0, ge=0.05, le=900)
    srm_alert_threshold: float = Field(default=0.001, gt=0, lt=1)
    no_exposures_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    # "buffered": POST /events and conversions are queued (SQS at INGEST_QUEUE_URL; without one, and
    # only on the local server, an in-process queue) and written by the ingest writer (abtest.ingest).
    ingest_mode: Literal["direct", "buffered"] = "direct"
    ingest_queue_url: str | None = None


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "db_host": "DB_HOST",
    "db_port": "DB_PORT",
    "db_name": "DB_NAME",
    "db_user": "DB_USER",
    "db_secret_arn": "DB_SECRET_ARN",
    "db_iam_auth": "DB_IAM_AUTH",
    "db_sslmode": "DB_SSLMODE",
    "db_connect_timeout": "DB_CONNECT_TIMEOUT",
    "db_statement_timeout_ms": "DB_STATEMENT_TIMEOUT_MS",
    "aws_region": "AWS_REGION",
    "experiment_cache_ttl_seconds": "EXPERIMENT_CACHE_TTL_SECONDS",
    "catalog_cache_ttl_seconds": "CATALOG_CACHE_TTL_SECONDS",
    "auth_mode": "AUTH_MODE",
    "scope_prefix": "SCOPE_PREFIX",
    "rollup_statement_timeout_ms": "ROLLUP_STATEMENT_TIMEOUT_MS",
    "rollup_budget_seconds": "ROLLUP_BUDGET_SECONDS",
    "webhook_local_mode": "WEBHOOK_LOCAL_MODE",
    "webhook_kms_key_id": "WEBHOOK_KMS_KEY_ID",
    "webhook_key_file": "WEBHOOK_KEY_FILE",
    "webhook_queue_url": "WEBHOOK_QUEUE_URL",
    "alert_event_bus": "ALERT_EVENT_BUS",
    "webhook_retry_base_seconds": "WEBHOOK_RETRY_BASE_SECONDS",
    "webhook_retry_cap_seconds": "WEBHOOK_RETRY_CAP_SECONDS",
    "webhook_max_attempts": "WEBHOOK_MAX_ATTEMPTS",
    "webhook_disable_after_failures": "WEBHOOK_DISABLE_AFTER_FAILURES",
    "webhook_lease_seconds": "WEBHOOK_LEASE_SECONDS",
    "srm_alert_threshold": "SRM_ALERT_THRESHOLD",
    "no_exposures_hours": "NO_EXPOSURES_HOURS",
    "ingest_mode": "INGEST_MODE",
    "ingest_queue_url": "INGEST_QUEUE_URL",
}


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (empty values count as unset)."""
    env = os.environ if environ is None else environ
    values = {field: env[name] for field, name in _ENV_NAMES.items() if env.get(name)}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, read from the environment on first use."""
    return settings_from_env()
